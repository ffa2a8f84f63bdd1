use hickory_proto::op::ResponseCode;
use hickory_proto::rr::RecordType;

use crate::harness::*;

#[test]
fn example_config_answers_geo_name_over_udp_and_tcp() {
    let m = Meridian::start_example();
    let q = with_ecs(query("www.example.com.", RecordType::A), "11.0.130.0", 24);
    for resp in [udp(m.v4(), &q), tcp(m.v4(), &q)] {
        assert_eq!(resp.metadata.response_code, ResponseCode::NoError);
        assert!(resp.metadata.authoritative);
        assert_eq!(
            addrs(&resp),
            vec!["192.0.2.10".parse::<std::net::IpAddr>().unwrap()]
        );
        let ecs = ecs_of(&resp).expect("ECS echoed");
        assert_eq!(ecs.source_prefix(), 24);
        assert_eq!(ecs.scope_prefix(), 20);
    }
}
