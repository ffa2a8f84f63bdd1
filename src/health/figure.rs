//! Reading a check's figure (replication lag, queue depth) out of a probe's response: a JSON
//! pointer into the body, a sample of Prometheus text exposition, or a header. Pure: the probe
//! hands over what it received.
use crate::settings::{Extract, split_sample};

/// The figure `extract` names in a response, or why there is none.
pub fn extract(
    extract: &Extract,
    header: impl Fn(&str) -> Option<String>,
    body: &[u8],
) -> Result<f64, String> {
    match extract {
        Extract::Header(name) => {
            let value = header(name).ok_or_else(|| format!("no {name} header"))?;
            number(value.trim()).ok_or_else(|| format!("header {name} {value:?} is not a number"))
        }
        Extract::Json(pointer) => {
            let doc: serde_json::Value =
                serde_json::from_slice(body).map_err(|e| format!("body is not JSON: {e}"))?;
            match doc.pointer(pointer) {
                None => Err(format!("no {pointer} in the JSON body")),
                Some(serde_json::Value::Number(n)) => n
                    .as_f64()
                    .ok_or_else(|| format!("{pointer} is not a number")),
                Some(serde_json::Value::String(s)) => {
                    number(s).ok_or_else(|| format!("{pointer} {s:?} is not a number"))
                }
                Some(other) => Err(format!("{pointer} is {other}, not a number")),
            }
        }
        Extract::Prometheus { name, labels } => {
            let text = std::str::from_utf8(body).map_err(|_| "body is not UTF-8".to_string())?;
            text.lines()
                .filter(|l| !l.trim_start().starts_with('#'))
                .filter_map(split_sample)
                .find(|(n, have, _)| *n == name && labels.iter().all(|l| have.contains(l)))
                .map(|(_, _, rest)| {
                    let value = rest.split_whitespace().next().unwrap_or("");
                    number(value).ok_or_else(|| format!("{name} {value:?} is not a number"))
                })
                .unwrap_or_else(|| Err(format!("no {name} sample with those labels")))
        }
    }
}

/// A finite number, as JSON, a header or Prometheus writes it.
fn number(s: &str) -> Option<f64> {
    s.parse::<f64>().ok().filter(|v| v.is_finite())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn no_header(_: &str) -> Option<String> {
        None
    }

    #[test]
    fn a_json_pointer_reads_numbers_and_numeric_strings() {
        let body = br#"{"replication":{"lag_seconds":42.5,"text":"7","role":"standby"}}"#;
        let at = |p: &str| extract(&Extract::Json(p.into()), no_header, body);
        assert_eq!(at("/replication/lag_seconds"), Ok(42.5));
        assert_eq!(at("/replication/text"), Ok(7.0));
        assert!(at("/replication/role").is_err());
        assert!(at("/replication/missing").is_err());
        assert!(extract(&Extract::Json("/a".into()), no_header, b"not json").is_err());
    }

    #[test]
    fn a_prometheus_sample_matches_by_name_and_labels() {
        let body = b"# HELP pg_replication_lag_seconds lag\n\
            # TYPE pg_replication_lag_seconds gauge\n\
            pg_replication_lag_seconds{db=\"other\"} 900\n\
            pg_replication_lag_seconds{instance=\"x\",db=\"main\"} 3.5 1700000000000\n\
            pg_up 1\n";
        let (name, labels, _) = split_sample(r#"pg_replication_lag_seconds{db="main"}"#).unwrap();
        let sel = Extract::Prometheus {
            name: name.into(),
            labels,
        };
        assert_eq!(extract(&sel, no_header, body), Ok(3.5));
        let up = Extract::Prometheus {
            name: "pg_up".into(),
            labels: vec![],
        };
        assert_eq!(extract(&up, no_header, body), Ok(1.0));
        let absent = Extract::Prometheus {
            name: "pg_replication_lag_seconds".into(),
            labels: vec![("db".into(), "none".into())],
        };
        assert!(extract(&absent, no_header, body).is_err());
    }

    #[test]
    fn a_header_holds_a_number() {
        let h = |n: &str| (n == "X-Replication-Lag").then(|| " 12 ".to_string());
        assert_eq!(
            extract(&Extract::Header("X-Replication-Lag".into()), h, b""),
            Ok(12.0)
        );
        assert!(extract(&Extract::Header("X-Other".into()), h, b"").is_err());
        let bad = |_: &str| Some("soon".to_string());
        assert!(extract(&Extract::Header("X".into()), bad, b"").is_err());
    }

    #[test]
    fn selectors_and_samples_split_with_escapes() {
        let (n, l, rest) = split_sample(r#"m{a="x\"y",b="2"} 5"#).unwrap();
        assert_eq!(n, "m");
        assert_eq!(
            l,
            vec![("a".into(), "x\"y".into()), ("b".into(), "2".into())]
        );
        assert_eq!(rest.trim(), "5");
        assert!(split_sample("{a=\"1\"} 2").is_none());
        assert!(split_sample(r#"m{a="1"#).is_none());
    }
}
