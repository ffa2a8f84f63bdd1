//! Country and continent codes as small `Copy` values, and the ISO 3166 country -> continent
//! table used when a database (the flat DB-IP / ip-location-db schema) carries no continent.
use std::fmt;
use std::str::FromStr;

/// An ISO 3166-1 alpha-2 country code, upper case.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct CountryCode([u8; 2]);

impl CountryCode {
    pub fn as_str(&self) -> &str {
        // Only ASCII upper-case letters are ever stored.
        std::str::from_utf8(&self.0).unwrap_or("??")
    }
}

impl FromStr for CountryCode {
    type Err = ();
    fn from_str(s: &str) -> Result<Self, ()> {
        match s.as_bytes() {
            [a, b] if a.is_ascii_alphabetic() && b.is_ascii_alphabetic() => {
                Ok(Self([a.to_ascii_uppercase(), b.to_ascii_uppercase()]))
            }
            _ => Err(()),
        }
    }
}

impl fmt::Display for CountryCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Debug for CountryCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An ISO 3166-2 subdivision code such as `US-CA` or `GB-ENG`: the country, then one to three
/// letters or digits. A small `Copy` value.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Subdivision {
    pub country: CountryCode,
    code: [u8; 3],
    len: u8,
}

impl Subdivision {
    /// The subdivision `code` (without the country part, as MaxMind stores it) of `country`.
    pub fn new(country: CountryCode, code: &str) -> Option<Subdivision> {
        let b = code.as_bytes();
        if b.is_empty() || b.len() > 3 || !b.iter().all(u8::is_ascii_alphanumeric) {
            return None;
        }
        let mut out = [0u8; 3];
        for (o, c) in out.iter_mut().zip(b) {
            *o = c.to_ascii_uppercase();
        }
        Some(Subdivision {
            country,
            code: out,
            len: b.len() as u8,
        })
    }
}

impl FromStr for Subdivision {
    type Err = ();
    /// `US-CA`: a country code, a hyphen, the subdivision's own code.
    fn from_str(s: &str) -> Result<Self, ()> {
        let (country, code) = s.split_once('-').ok_or(())?;
        Subdivision::new(country.parse()?, code).ok_or(())
    }
}

impl fmt::Display for Subdivision {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let code = std::str::from_utf8(&self.code[..usize::from(self.len)]).unwrap_or("?");
        write!(f, "{}-{code}", self.country)
    }
}

impl fmt::Debug for Subdivision {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// The seven continent codes MaxMind databases use.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug, PartialOrd, Ord)]
pub enum Continent {
    Africa,
    Antarctica,
    Asia,
    Europe,
    NorthAmerica,
    Oceania,
    SouthAmerica,
}

impl Continent {
    pub const ALL: [Continent; 7] = [
        Continent::Africa,
        Continent::Antarctica,
        Continent::Asia,
        Continent::Europe,
        Continent::NorthAmerica,
        Continent::Oceania,
        Continent::SouthAmerica,
    ];

    pub fn code(self) -> &'static str {
        match self {
            Continent::Africa => "AF",
            Continent::Antarctica => "AN",
            Continent::Asia => "AS",
            Continent::Europe => "EU",
            Continent::NorthAmerica => "NA",
            Continent::Oceania => "OC",
            Continent::SouthAmerica => "SA",
        }
    }
}

impl FromStr for Continent {
    type Err = ();
    fn from_str(s: &str) -> Result<Self, ()> {
        Continent::ALL
            .into_iter()
            .find(|c| c.code().eq_ignore_ascii_case(s))
            .ok_or(())
    }
}

impl fmt::Display for Continent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.code())
    }
}

/// Countries of each continent, as MaxMind assigns them (a country belongs to exactly one).
const CONTINENT_COUNTRIES: [(Continent, &str); 7] = [
    (
        Continent::Africa,
        "AO BF BI BJ BW CD CF CG CI CM CV DJ DZ EG EH ER ET GA GH GM GN GQ GW KE KM LR LS LY MA MG ML \
         MR MU MW MZ NA NE NG RE RW SC SD SH SL SN SO SS ST SZ TD TG TN TZ UG YT ZA ZM ZW",
    ),
    (Continent::Antarctica, "AQ BV GS HM TF"),
    (
        Continent::Asia,
        "AE AF AM AZ BD BH BN BT CC CN CX GE HK ID IL IN IO IQ IR JO JP KG KH KP KR KW KZ LA LB LK MM \
         MN MO MV MY NP OM PH PK PS QA SA SG SY TH TJ TL TM TR TW UZ VN YE",
    ),
    (
        Continent::Europe,
        "AD AL AT AX BA BE BG BY CH CY CZ DE DK EE ES FI FO FR GB GG GI GR HR HU IE IM IS IT JE LI LT \
         LU LV MC MD ME MK MT NL NO PL PT RO RS RU SE SI SJ SK SM UA VA XK",
    ),
    (
        Continent::NorthAmerica,
        "AG AI AW BB BL BM BQ BS BZ CA CR CU CW DM DO GD GL GP GT HN HT JM KN KY LC MF MQ MS MX NI PA \
         PM PR SV SX TC TT US VC VG VI",
    ),
    (
        Continent::Oceania,
        "AS AU CK FJ FM GU KI MH MP NC NF NR NU NZ PF PG PN PW SB TK TO TV UM VU WF WS",
    ),
    (
        Continent::SouthAmerica,
        "AR BO BR CL CO EC FK GF GY PE PY SR UY VE",
    ),
];

/// Every country the continent table knows, with its continent.
pub fn all_countries() -> impl Iterator<Item = (CountryCode, Continent)> {
    CONTINENT_COUNTRIES.iter().flat_map(|(continent, list)| {
        list.split_ascii_whitespace()
            .filter_map(move |c| c.parse().ok().map(|cc| (cc, *continent)))
    })
}

/// The continent a country belongs to, or `None` for a code the table does not know
/// (for example MaxMind's "EU" and "AP" pseudo-countries).
pub fn continent_of(country: CountryCode) -> Option<Continent> {
    CONTINENT_COUNTRIES.iter().find_map(|(continent, list)| {
        list.split_ascii_whitespace()
            .any(|c| c.as_bytes() == country.0)
            .then_some(*continent)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subdivision_codes_read_and_print_as_iso_3166_2() {
        let ca: Subdivision = "us-ca".parse().unwrap();
        assert_eq!(ca.to_string(), "US-CA");
        assert_eq!(
            "GB-ENG".parse::<Subdivision>().unwrap().to_string(),
            "GB-ENG"
        );
        assert_eq!("FR-13".parse::<Subdivision>().unwrap().to_string(), "FR-13");
        let us: CountryCode = "US".parse().unwrap();
        assert_eq!(Subdivision::new(us, "ca"), Some(ca));
        for bad in ["US", "USA-CA", "US-", "US-CALI", "US-C A", "-CA"] {
            assert!(bad.parse::<Subdivision>().is_err(), "{bad}");
        }
    }

    #[test]
    fn country_codes_parse_case_insensitively() {
        let us: CountryCode = "us".parse().unwrap();
        assert_eq!(us.as_str(), "US");
        assert!("USA".parse::<CountryCode>().is_err());
        assert!("1A".parse::<CountryCode>().is_err());
    }

    #[test]
    fn continent_table_covers_each_continent_once() {
        let cc = |s: &str| s.parse::<CountryCode>().unwrap();
        assert_eq!(continent_of(cc("US")), Some(Continent::NorthAmerica));
        assert_eq!(continent_of(cc("de")), Some(Continent::Europe));
        assert_eq!(continent_of(cc("JP")), Some(Continent::Asia));
        assert_eq!(continent_of(cc("AU")), Some(Continent::Oceania));
        assert_eq!(continent_of(cc("BR")), Some(Continent::SouthAmerica));
        assert_eq!(continent_of(cc("ZA")), Some(Continent::Africa));
        assert_eq!(continent_of(cc("AQ")), Some(Continent::Antarctica));
        assert_eq!(continent_of(cc("ZZ")), None);
        let mut seen = std::collections::HashSet::new();
        for (_, list) in CONTINENT_COUNTRIES {
            for c in list.split_ascii_whitespace() {
                assert!(seen.insert(c), "{c} listed twice");
            }
        }
    }

    #[test]
    fn continent_codes_round_trip() {
        for c in Continent::ALL {
            assert_eq!(c.code().parse::<Continent>(), Ok(c));
        }
        assert!("XX".parse::<Continent>().is_err());
    }
}
