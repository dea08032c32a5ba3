//! Places: the built-in gazetteer (airports by IATA code, major cities) held in memory, its
//! search, and resolving a trip's or parcel's origin/destination into a `Location`.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::geo::LatLng;
use super::FieldError;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum LocationKind {
    City,
    Airport,
    Custom,
}

impl LocationKind {
    pub fn as_str(&self) -> &'static str {
        match self {
            Self::City => "city",
            Self::Airport => "airport",
            Self::Custom => "custom",
        }
    }
}

/// A resolved place: from the gazetteer (with a code) or given explicitly.
#[derive(Debug, Clone, PartialEq)]
pub struct Location {
    pub code: Option<String>,
    pub label: String,
    pub city: Option<String>,
    pub country: String,
    pub point: LatLng,
    pub kind: LocationKind,
    pub timezone: Option<String>,
}

/// A location on the wire, always in its resolved full form.
#[derive(Debug, Clone, Serialize, ToSchema, PartialEq)]
pub struct LocationView {
    /// Gazetteer code (`LHR`, `london-gb`); absent for a custom location.
    pub code: Option<String>,
    pub name: String,
    pub label: String,
    pub city: Option<String>,
    /// ISO 3166-1 alpha-2.
    pub country: String,
    pub lat: f64,
    pub lng: f64,
    /// `airport`, `city` or `custom`.
    pub kind: &'static str,
    pub timezone: Option<String>,
}

impl Location {
    pub fn view(&self) -> LocationView {
        LocationView {
            code: self.code.clone(),
            name: self.label.clone(),
            label: self.label.clone(),
            city: self.city.clone(),
            country: self.country.clone(),
            lat: self.point.lat(),
            lng: self.point.lng(),
            kind: self.kind.as_str(),
            timezone: self.timezone.clone(),
        }
    }

    /// The view for someone who must not learn the exact spot of a custom location.
    pub fn public_view(&self) -> LocationView {
        let mut view = self.view();
        if self.kind == LocationKind::Custom {
            let coarse = self.point.coarse();
            view.lat = coarse.lat();
            view.lng = coarse.lng();
        }
        view
    }
}

/// An origin or destination as a client sends it: `{"code": "LHR"}` or
/// `{"label", "lat", "lng", "country"}`.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LocationInput {
    pub code: Option<String>,
    pub label: Option<String>,
    pub lat: Option<f64>,
    pub lng: Option<f64>,
    pub country: Option<String>,
}

const MAX_LABEL_CHARS: usize = 100;
const MAX_QUERY_CHARS: usize = 100;

pub struct Gazetteer {
    places: Vec<Location>,
    by_code: HashMap<String, usize>,
}

impl std::fmt::Debug for Gazetteer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Gazetteer({} places)", self.places.len())
    }
}

fn country_code(raw: &str) -> Option<String> {
    let c = raw.trim().to_ascii_uppercase();
    (c.len() == 2 && c.bytes().all(|b| b.is_ascii_uppercase())).then_some(c)
}

impl Gazetteer {
    /// Parses the tab-separated data file (`kind code name city country lat lng timezone`).
    pub fn parse(tsv: &str) -> Result<Self, String> {
        let mut places = Vec::new();
        let mut by_code = HashMap::new();
        for (n, line) in tsv
            .lines()
            .enumerate()
            .filter(|(_, l)| !l.starts_with('#') && !l.is_empty())
        {
            let f: Vec<&str> = line.split('\t').collect();
            let bad = |what: &str| format!("gazetteer line {}: {what}", n + 1);
            let [kind, code, name, city, country, lat, lng, tz] = f[..] else {
                return Err(bad("expected 8 fields"));
            };
            let kind = match kind {
                "airport" => LocationKind::Airport,
                "city" => LocationKind::City,
                _ => return Err(bad("unknown kind")),
            };
            let lat: f64 = lat.parse().map_err(|_| bad("bad latitude"))?;
            let lng: f64 = lng.parse().map_err(|_| bad("bad longitude"))?;
            let point = LatLng::parse(lat, lng, "place").map_err(|e| bad(&e.message))?;
            let country = country_code(country).ok_or_else(|| bad("bad country"))?;
            if by_code
                .insert(code.to_ascii_lowercase(), places.len())
                .is_some()
            {
                return Err(bad("duplicate code"));
            }
            places.push(Location {
                code: Some(code.to_owned()),
                label: name.to_owned(),
                city: (!city.is_empty()).then(|| city.to_owned()),
                country,
                point,
                kind,
                timezone: (!tz.is_empty()).then(|| tz.to_owned()),
            });
        }
        Ok(Self { places, by_code })
    }

    pub fn len(&self) -> usize {
        self.places.len()
    }

    pub fn is_empty(&self) -> bool {
        self.places.is_empty()
    }

    /// By code, case-insensitively.
    pub fn lookup(&self, code: &str) -> Option<&Location> {
        self.by_code
            .get(&code.trim().to_ascii_lowercase())
            .map(|&i| &self.places[i])
    }

    /// Exact code first, then city-name prefix, then place-name prefix, then any word of the
    /// name or city starting with the query; ties by kind (cities first), then name.
    pub fn search(&self, query: &str, limit: usize) -> Vec<&Location> {
        let q: String = query
            .trim()
            .to_lowercase()
            .chars()
            .take(MAX_QUERY_CHARS)
            .collect();
        if q.is_empty() {
            return Vec::new();
        }
        let word_prefix = |s: &str| {
            s.split(|c: char| !c.is_alphanumeric())
                .any(|w| w.starts_with(&q))
        };
        let mut hits: Vec<(u8, &Location)> = self
            .places
            .iter()
            .filter_map(|p| {
                let name = p.label.to_lowercase();
                let city = p.city.as_deref().map(str::to_lowercase).unwrap_or_default();
                let rank = if p
                    .code
                    .as_deref()
                    .is_some_and(|c| c.eq_ignore_ascii_case(&q))
                {
                    0
                } else if city.starts_with(&q) {
                    1
                } else if name.starts_with(&q) {
                    2
                } else if word_prefix(&name) || word_prefix(&city) {
                    3
                } else {
                    return None;
                };
                Some((rank, p))
            })
            .collect();
        hits.sort_by(|(ra, a), (rb, b)| {
            (ra, a.kind, &a.label, &a.code).cmp(&(rb, b.kind, &b.label, &b.code))
        });
        hits.into_iter().take(limit).map(|(_, p)| p).collect()
    }

    /// Resolves a client's location: a known code, or a complete custom place.
    pub fn resolve(&self, input: &LocationInput, field: &str) -> Result<Location, FieldError> {
        let custom_given = input.label.is_some()
            || input.lat.is_some()
            || input.lng.is_some()
            || input.country.is_some();
        match (&input.code, custom_given) {
            (Some(_), true) => Err(FieldError::new(
                field,
                "give either a code or label, lat, lng and country, not both",
            )),
            (Some(code), false) => self.lookup(code).cloned().ok_or_else(|| {
                FieldError::new(
                    format!("{field}.code"),
                    "is not a known airport or city code",
                )
            }),
            (None, _) => {
                let (Some(label), Some(lat), Some(lng), Some(country)) =
                    (&input.label, input.lat, input.lng, &input.country)
                else {
                    return Err(FieldError::new(
                        field,
                        "needs a code, or label, lat, lng and country",
                    ));
                };
                let label = label.trim();
                if label.is_empty()
                    || label.chars().count() > MAX_LABEL_CHARS
                    || label.chars().any(char::is_control)
                {
                    return Err(FieldError::new(
                        format!("{field}.label"),
                        "must be 1 to 100 characters",
                    ));
                }
                let country = country_code(country).ok_or_else(|| {
                    FieldError::new(
                        format!("{field}.country"),
                        "must be an ISO 3166-1 alpha-2 code",
                    )
                })?;
                Ok(Location {
                    code: None,
                    label: label.to_owned(),
                    city: None,
                    country,
                    point: LatLng::parse(lat, lng, field)?,
                    kind: LocationKind::Custom,
                    timezone: None,
                })
            }
        }
    }

    /// Rebuilds a stored location (code, label, country, coordinates) into its full form.
    pub fn restore(
        &self,
        code: Option<&str>,
        label: &str,
        country: &str,
        lat: f64,
        lng: f64,
    ) -> Location {
        if let Some(place) = code.and_then(|c| self.lookup(c)) {
            return place.clone();
        }
        Location {
            code: code.map(str::to_owned),
            label: label.to_owned(),
            city: None,
            country: country.to_owned(),
            point: LatLng::clamped(lat, lng),
            kind: LocationKind::Custom,
            timezone: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &str = "# header\n\
airport\tLHR\tLondon Heathrow Airport\tLondon\tGB\t51.4706\t-0.46194\tEurope/London\n\
airport\tLGW\tLondon Gatwick Airport\tLondon\tGB\t51.1481\t-0.19028\tEurope/London\n\
airport\tLON\tSome Airport Coded Lon\tElsewhere\tUS\t40.0\t-80.0\tAmerica/New_York\n\
airport\tYXU\tLondon Airport\tLondon\tCA\t43.0356\t-81.1539\tAmerica/Toronto\n\
airport\tBHX\tBirmingham Airport\tBirmingham\tGB\t52.4539\t-1.74803\tEurope/London\n\
city\tlondon-gb\tLondon\tLondon\tGB\t51.50853\t-0.12574\tEurope/London\n";

    fn g() -> Gazetteer {
        Gazetteer::parse(SAMPLE).unwrap()
    }

    #[test]
    fn codes_are_found_case_insensitively() {
        assert_eq!(g().lookup("lhr").unwrap().label, "London Heathrow Airport");
        assert_eq!(g().lookup("LONDON-GB").unwrap().kind, LocationKind::City);
        assert!(g().lookup("XXX").is_none());
    }

    #[test]
    fn search_ranks_exact_code_then_city_then_name_then_word_prefixes() {
        let gz = g();
        let codes: Vec<_> = gz
            .search("lon", 20)
            .iter()
            .map(|p| p.code.clone().unwrap())
            .collect();
        assert_eq!(codes[0], "LON", "exact code first");
        assert_eq!(
            codes[1], "london-gb",
            "then city prefix, cities before airports"
        );
        assert_eq!(codes.len(), 5);
        let heath: Vec<_> = gz
            .search("heath", 20)
            .iter()
            .map(|p| p.code.clone().unwrap())
            .collect();
        assert_eq!(heath, ["LHR"]);
        assert!(gz.search("  ", 20).is_empty());
        assert_eq!(gz.search("l", 2).len(), 2);
    }

    #[test]
    fn locations_resolve_from_codes_or_complete_custom_places() {
        let gz = g();
        let by_code = LocationInput {
            code: Some("LHR".into()),
            label: None,
            lat: None,
            lng: None,
            country: None,
        };
        assert_eq!(
            gz.resolve(&by_code, "origin").unwrap().city.as_deref(),
            Some("London")
        );
        let custom = LocationInput {
            code: None,
            label: Some(" Dock 4 ".into()),
            lat: Some(51.5),
            lng: Some(-0.1),
            country: Some("gb".into()),
        };
        let loc = gz.resolve(&custom, "origin").unwrap();
        assert_eq!(
            (loc.label.as_str(), loc.country.as_str(), loc.kind),
            ("Dock 4", "GB", LocationKind::Custom)
        );
        let unknown = LocationInput {
            code: Some("ZZZ".into()),
            ..by_code.clone()
        };
        assert_eq!(
            gz.resolve(&unknown, "origin").unwrap_err().field,
            "origin.code"
        );
        let both = LocationInput {
            label: Some("x".into()),
            ..by_code
        };
        assert_eq!(gz.resolve(&both, "origin").unwrap_err().field, "origin");
        let incomplete = LocationInput {
            lat: None,
            ..custom.clone()
        };
        assert_eq!(
            gz.resolve(&incomplete, "destination").unwrap_err().field,
            "destination"
        );
        let far = LocationInput {
            lat: Some(91.0),
            ..custom
        };
        assert_eq!(gz.resolve(&far, "origin").unwrap_err().field, "origin.lat");
    }

    #[test]
    fn a_custom_place_is_coarse_in_public_views() {
        let custom = LocationInput {
            code: None,
            label: Some("Home".into()),
            lat: Some(51.123456),
            lng: Some(-0.987654),
            country: Some("GB".into()),
        };
        let loc = g().resolve(&custom, "origin").unwrap();
        assert_eq!(
            (loc.public_view().lat, loc.public_view().lng),
            (51.12, -0.99)
        );
        assert_eq!(loc.view().lat, 51.123456);
    }

    #[test]
    fn the_shipped_data_file_parses_with_thousands_of_airports() {
        let gz = Gazetteer::parse(include_str!("../../data/gazetteer.tsv")).unwrap();
        assert!(gz.len() > 7_000, "{}", gz.len());
        assert_eq!(gz.lookup("JFK").unwrap().country, "US");
        assert_eq!(gz.lookup("london-gb").unwrap().kind, LocationKind::City);
    }
}
