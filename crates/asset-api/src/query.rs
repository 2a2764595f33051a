//! The parameters of an asset list or asset search, from a query string or a JSON body,
//! checked before any of them reaches the database: a bad one is named in the answer.

use base64::Engine;
use chrono::{DateTime, SecondsFormat, Utc};
use serde_json::Value;

/// A parameter the request got wrong.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{name}: {reason}")]
pub struct BadParameter {
    pub name: String,
    pub reason: String,
}

fn bad(name: &str, reason: impl Into<String>) -> BadParameter {
    BadParameter {
        name: name.to_string(),
        reason: reason.into(),
    }
}

/// A time filter: documents whose time span meets it match.
#[derive(Debug, Clone, PartialEq)]
pub enum TimeFilter {
    Instant(String),
    /// Open ends are `None`; both are RFC 3339 in UTC.
    Interval(Option<String>, Option<String>),
}

/// Where a page starts: the ordering key of the document next to it, and the direction.
#[derive(Debug, Clone, PartialEq)]
pub struct Token {
    pub backwards: bool,
    pub key: Key,
}

/// The order of documents: by collection, item, start time (microseconds), id.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Key {
    pub collection: String,
    pub item: String,
    pub sort_us: i64,
    pub id: String,
}

impl Token {
    pub fn encode(&self) -> String {
        let raw = serde_json::json!([
            if self.backwards { "p" } else { "n" },
            self.key.collection,
            self.key.item,
            self.key.sort_us,
            self.key.id
        ]);
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(raw.to_string())
    }

    pub fn decode(token: &str) -> Result<Token, BadParameter> {
        let not_ours = || bad("token", "not a paging token of this service");
        let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(token)
            .map_err(|_| not_ours())?;
        let (dir, collection, item, sort_us, id): (String, String, String, i64, String) =
            serde_json::from_slice(&bytes).map_err(|_| not_ours())?;
        let backwards = match dir.as_str() {
            "n" => false,
            "p" => true,
            _ => return Err(not_ours()),
        };
        if [&collection, &item, &id].iter().any(|s| s.contains('\0')) {
            return Err(not_ours());
        }
        Ok(Token {
            backwards,
            key: Key {
                collection,
                item,
                sort_us,
                id,
            },
        })
    }
}

/// Everything a request asks for.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct AssetQuery {
    pub collections: Vec<String>,
    pub items: Vec<String>,
    pub ids: Vec<String>,
    pub roles: Vec<String>,
    pub datetime: Option<TimeFilter>,
    /// Envelopes (west, south, east, north); a box across the antimeridian gives two.
    pub bbox: Vec<[f64; 4]>,
    /// A GeoJSON geometry, as text.
    pub intersects: Option<String>,
    pub limit: usize,
    pub token: Option<Token>,
}

/// The limits a query is checked against.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub default_limit: usize,
    pub max_limit: usize,
}

/// The parameters a request may name; others are ignored, as STAC APIs do.
const LIST_PARAMETERS: &[&str] = &["collections", "items", "ids", "roles"];

impl AssetQuery {
    /// From the pairs of a query string (`a=1&b=x,y`): lists comma-separated.
    pub fn from_pairs<'a>(
        pairs: impl Iterator<Item = (&'a str, &'a str)>,
        limits: Limits,
    ) -> Result<AssetQuery, BadParameter> {
        let mut q = AssetQuery {
            limit: limits.default_limit,
            ..Default::default()
        };
        let mut seen: Vec<&str> = Vec::new();
        for (name, value) in pairs {
            if seen.contains(&name) {
                return Err(bad(name, "given more than once"));
            }
            seen.push(name);
            if value.contains('\0') {
                return Err(bad(name, "contains a NUL character"));
            }
            // An empty value is no value (`datetime=` from a form left blank).
            if value.trim().is_empty() {
                continue;
            }
            match name {
                n if LIST_PARAMETERS.contains(&n) => {
                    let list = value
                        .split(',')
                        .filter(|s| !s.is_empty())
                        .map(str::to_string)
                        .collect();
                    *q.list_mut(n) = list;
                }
                "datetime" => q.datetime = Some(parse_datetime(value)?),
                "bbox" => {
                    let numbers = value
                        .split(',')
                        .map(|s| s.trim().parse::<f64>())
                        .collect::<Result<Vec<f64>, _>>()
                        .map_err(|_| bad("bbox", "not a comma-separated list of numbers"))?;
                    q.bbox = parse_bbox(&numbers)?;
                }
                "intersects" => q.intersects = Some(parse_geometry(&parse_json(name, value)?)?),
                "limit" => q.limit = parse_limit(value.trim().parse::<i64>().ok(), limits)?,
                "token" => q.token = Some(Token::decode(value)?),
                _ => {}
            }
        }
        q.check()?;
        Ok(q)
    }

    /// From a JSON body (POST): lists as arrays of strings.
    pub fn from_json(body: &[u8], limits: Limits) -> Result<AssetQuery, BadParameter> {
        let v: Value = if body.iter().all(u8::is_ascii_whitespace) {
            Value::Object(Default::default())
        } else {
            serde_json::from_slice(body).map_err(|e| bad("body", format!("not JSON: {e}")))?
        };
        let Value::Object(map) = v else {
            return Err(bad("body", "not a JSON object"));
        };
        let mut q = AssetQuery {
            limit: limits.default_limit,
            ..Default::default()
        };
        for (name, value) in &map {
            match name.as_str() {
                n if LIST_PARAMETERS.contains(&n) => *q.list_mut(n) = string_list(n, value)?,
                "datetime" => {
                    let s = value.as_str().ok_or_else(|| bad(name, "not a string"))?;
                    if s.contains('\0') {
                        return Err(bad(name, "contains a NUL character"));
                    }
                    if !s.trim().is_empty() {
                        q.datetime = Some(parse_datetime(s)?);
                    }
                }
                "bbox" => {
                    let numbers = value
                        .as_array()
                        .and_then(|a| a.iter().map(Value::as_f64).collect::<Option<Vec<f64>>>())
                        .ok_or_else(|| bad("bbox", "not an array of numbers"))?;
                    q.bbox = parse_bbox(&numbers)?;
                }
                "intersects" => q.intersects = Some(parse_geometry(value)?),
                "limit" => {
                    // JSON Schema's integers include 3.0.
                    let n = value.as_i64().or_else(|| {
                        value
                            .as_f64()
                            .filter(|f| f.fract() == 0.0 && f.abs() < 1e15)
                            .map(|f| f as i64)
                    });
                    q.limit = parse_limit(n, limits)?
                }
                "token" => {
                    let s = value.as_str().ok_or_else(|| bad(name, "not a string"))?;
                    q.token = Some(Token::decode(s)?);
                }
                _ => {}
            }
        }
        q.check()?;
        Ok(q)
    }

    fn list_mut(&mut self, name: &str) -> &mut Vec<String> {
        match name {
            "collections" => &mut self.collections,
            "items" => &mut self.items,
            "ids" => &mut self.ids,
            _ => &mut self.roles,
        }
    }

    fn check(&self) -> Result<(), BadParameter> {
        if !self.bbox.is_empty() && self.intersects.is_some() {
            return Err(bad(
                "intersects",
                "only one of bbox and intersects may be given",
            ));
        }
        Ok(())
    }

    /// The list parameters by name, in the order links repeat them.
    fn lists(&self) -> [(&'static str, &Vec<String>); 4] {
        [
            ("collections", &self.collections),
            ("items", &self.items),
            ("ids", &self.ids),
            ("roles", &self.roles),
        ]
    }

    /// The query as a JSON body (for the paging links of a POST).
    pub fn to_body(&self, token: Option<&Token>) -> Value {
        let mut body = serde_json::Map::new();
        for (name, list) in self.lists() {
            if !list.is_empty() {
                body.insert(name.into(), serde_json::json!(list));
            }
        }
        if let Some(d) = &self.datetime {
            body.insert("datetime".into(), Value::String(d.to_param()));
        }
        if let Some(b) = self.bbox_param() {
            body.insert("bbox".into(), serde_json::json!(b));
        }
        if let Some(g) = &self.intersects
            && let Ok(v) = serde_json::from_str::<Value>(g)
        {
            body.insert("intersects".into(), v);
        }
        body.insert("limit".into(), serde_json::json!(self.limit));
        if let Some(t) = token {
            body.insert("token".into(), Value::String(t.encode()));
        }
        Value::Object(body)
    }

    /// The query as query-string pairs (for the paging links of a GET).
    pub fn to_pairs(&self, token: Option<&Token>) -> Vec<(String, String)> {
        let mut pairs = Vec::new();
        for (name, list) in self.lists() {
            if !list.is_empty() {
                pairs.push((name.to_string(), list.join(",")));
            }
        }
        if let Some(d) = &self.datetime {
            pairs.push(("datetime".into(), d.to_param()));
        }
        if let Some(b) = self.bbox_param() {
            let b: Vec<String> = b.iter().map(|x| x.to_string()).collect();
            pairs.push(("bbox".into(), b.join(",")));
        }
        if let Some(g) = &self.intersects {
            pairs.push(("intersects".into(), g.clone()));
        }
        pairs.push(("limit".into(), self.limit.to_string()));
        if let Some(t) = token {
            pairs.push(("token".into(), t.encode()));
        }
        pairs
    }

    /// The bbox as given (one box, the west edge east of the east edge across the
    /// antimeridian).
    fn bbox_param(&self) -> Option<[f64; 4]> {
        match self.bbox.as_slice() {
            [] => None,
            [one] => Some(*one),
            [east_part, west_part, ..] => {
                Some([east_part[0], east_part[1], west_part[2], east_part[3]])
            }
        }
    }
}

impl TimeFilter {
    pub fn to_param(&self) -> String {
        match self {
            TimeFilter::Instant(t) => t.clone(),
            TimeFilter::Interval(a, b) => format!(
                "{}/{}",
                a.as_deref().unwrap_or(".."),
                b.as_deref().unwrap_or("..")
            ),
        }
    }
}

fn string_list(name: &str, value: &Value) -> Result<Vec<String>, BadParameter> {
    let list = value
        .as_array()
        .and_then(|a| {
            a.iter()
                .map(|v| v.as_str().map(str::to_string))
                .collect::<Option<Vec<String>>>()
        })
        .ok_or_else(|| bad(name, "not an array of strings"))?;
    if list.iter().any(|s| s.contains('\0')) {
        return Err(bad(name, "contains a NUL character"));
    }
    Ok(list)
}

fn parse_json(name: &str, value: &str) -> Result<Value, BadParameter> {
    serde_json::from_str(value).map_err(|e| bad(name, format!("not JSON: {e}")))
}

fn parse_limit(value: Option<i64>, limits: Limits) -> Result<usize, BadParameter> {
    match value {
        Some(n) if n >= 1 && n as u64 <= limits.max_limit as u64 => Ok(n as usize),
        _ => Err(bad(
            "limit",
            format!("not an integer from 1 to {}", limits.max_limit),
        )),
    }
}

fn parse_instant(s: &str) -> Result<String, BadParameter> {
    let t = DateTime::parse_from_rfc3339(s.trim()).map_err(|e| {
        bad(
            "datetime",
            format!("'{s}' is not an RFC 3339 date-time ({e})"),
        )
    })?;
    let t = t.with_timezone(&Utc);
    // PostgreSQL has no year 0 (nor any before year 1 in RFC 3339's range).
    if chrono::Datelike::year(&t) < 1 {
        return Err(bad("datetime", format!("'{s}' lies before year 1")));
    }
    Ok(t.to_rfc3339_opts(SecondsFormat::AutoSi, true))
}

/// An instant, or an interval `a/b` whose ends may be open (`..` or empty).
pub fn parse_datetime(s: &str) -> Result<TimeFilter, BadParameter> {
    let Some((a, b)) = s.split_once('/') else {
        return Ok(TimeFilter::Instant(parse_instant(s)?));
    };
    let end = |e: &str| -> Result<Option<String>, BadParameter> {
        match e.trim() {
            "" | ".." => Ok(None),
            t => parse_instant(t).map(Some),
        }
    };
    let (a, b) = (end(a)?, end(b)?);
    if a.is_none() && b.is_none() {
        return Err(bad("datetime", "an interval needs at least one closed end"));
    }
    if let (Some(x), Some(y)) = (&a, &b)
        && DateTime::parse_from_rfc3339(x).ok() > DateTime::parse_from_rfc3339(y).ok()
    {
        return Err(bad("datetime", "the interval ends before it starts"));
    }
    Ok(TimeFilter::Interval(a, b))
}

/// `[west, south, east, north]` or the 3D form; a west edge east of the east edge
/// crosses the antimeridian.
pub fn parse_bbox(numbers: &[f64]) -> Result<Vec<[f64; 4]>, BadParameter> {
    let [w, s, e, n] = match *numbers {
        [w, s, e, n] => [w, s, e, n],
        [w, s, _, e, n, _] => [w, s, e, n],
        _ => return Err(bad("bbox", "needs 4 or 6 numbers")),
    };
    if numbers.iter().any(|x| !x.is_finite()) {
        return Err(bad("bbox", "holds a number that is not finite"));
    }
    if ![w, e].iter().all(|x| (-180.0..=180.0).contains(x))
        || ![s, n].iter().all(|y| (-90.0..=90.0).contains(y))
    {
        return Err(bad(
            "bbox",
            "longitudes must lie in [-180, 180] and latitudes in [-90, 90]",
        ));
    }
    if s > n {
        return Err(bad("bbox", "its south edge lies north of its north edge"));
    }
    Ok(if w > e {
        vec![[w, s, 180.0, n], [-180.0, s, e, n]]
    } else {
        vec![[w, s, e, n]]
    })
}

/// A GeoJSON geometry object (its shape is checked by PostGIS when the query runs).
fn parse_geometry(v: &Value) -> Result<String, BadParameter> {
    const TYPES: &[&str] = &[
        "Point",
        "MultiPoint",
        "LineString",
        "MultiLineString",
        "Polygon",
        "MultiPolygon",
        "GeometryCollection",
    ];
    let kind = v["type"].as_str().unwrap_or_default();
    if !TYPES.contains(&kind) {
        return Err(bad("intersects", "not a GeoJSON geometry"));
    }
    let text = v.to_string();
    if text.contains("\\u0000") {
        return Err(bad("intersects", "contains a NUL character"));
    }
    Ok(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMITS: Limits = Limits {
        default_limit: 10,
        max_limit: 1000,
    };

    fn get(query: &str) -> Result<AssetQuery, BadParameter> {
        let pairs: Vec<(String, String)> = url::form_urlencoded::parse(query.as_bytes())
            .into_owned()
            .collect();
        AssetQuery::from_pairs(pairs.iter().map(|(a, b)| (a.as_str(), b.as_str())), LIMITS)
    }

    #[test]
    fn datetime_instants_and_intervals() {
        assert_eq!(
            parse_datetime("2001-02-03T04:05:06+01:00").unwrap(),
            TimeFilter::Instant("2001-02-03T03:05:06Z".into())
        );
        assert_eq!(
            parse_datetime("2001-01-01T00:00:00Z/..").unwrap(),
            TimeFilter::Interval(Some("2001-01-01T00:00:00Z".into()), None)
        );
        assert_eq!(
            parse_datetime("/2001-01-01T00:00:00.5Z").unwrap(),
            TimeFilter::Interval(None, Some("2001-01-01T00:00:00.500Z".into()))
        );
        for wrong in [
            "2001-01-01",
            "../..",
            "2002-01-01T00:00:00Z/2001-01-01T00:00:00Z",
            "x/2001-01-01T00:00:00Z",
            "0000-06-01T00:00:00Z",
            "0001-01-01T00:00:00+01:00",
        ] {
            let e = parse_datetime(wrong).unwrap_err();
            assert_eq!(e.name, "datetime", "{wrong}");
        }
    }

    #[test]
    fn bbox_checked_and_split_at_the_antimeridian() {
        assert_eq!(
            parse_bbox(&[0.0, 1.0, 2.0, 3.0]).unwrap(),
            vec![[0.0, 1.0, 2.0, 3.0]]
        );
        assert_eq!(
            parse_bbox(&[0.0, 1.0, -5.0, 2.0, 3.0, 5.0]).unwrap(),
            vec![[0.0, 1.0, 2.0, 3.0]]
        );
        assert_eq!(
            parse_bbox(&[170.0, -10.0, -170.0, 10.0]).unwrap(),
            vec![[170.0, -10.0, 180.0, 10.0], [-180.0, -10.0, -170.0, 10.0]]
        );
        assert!(parse_bbox(&[0.0, 10.0, 1.0, 5.0]).is_err());
        assert!(parse_bbox(&[0.0, 1.0, 2.0]).is_err());
        assert!(parse_bbox(&[0.0, -91.0, 2.0, 3.0]).is_err());
    }

    #[test]
    fn query_strings_name_the_bad_parameter() {
        let q = get("roles=data,index&limit=5&datetime=2001-01-01T00:00:00Z/..&other=1").unwrap();
        assert_eq!(q.roles, ["data", "index"]);
        assert_eq!(q.limit, 5);
        assert_eq!(get("").unwrap().limit, 10);
        assert_eq!(get("datetime=&bbox=&limit=").unwrap(), get("").unwrap());
        assert_eq!(get("limit=0").unwrap_err().name, "limit");
        assert_eq!(get("limit=1001").unwrap_err().name, "limit");
        assert_eq!(get("limit=x").unwrap_err().name, "limit");
        assert_eq!(get("bbox=1,2,x,4").unwrap_err().name, "bbox");
        assert_eq!(get("token=abc").unwrap_err().name, "token");
        assert_eq!(get("ids=a%00b").unwrap_err().name, "ids");
        assert_eq!(get("limit=1&limit=2").unwrap_err().name, "limit");
        assert_eq!(
            get("bbox=0,0,1,1&intersects=%7B%22type%22%3A%22Point%22%2C%22coordinates%22%3A%5B0%2C0%5D%7D")
                .unwrap_err()
                .name,
            "intersects"
        );
    }

    #[test]
    fn json_bodies() {
        let q = AssetQuery::from_json(
            br#"{"collections": ["c"], "items": ["i"], "bbox": [0, 0, 1, 1], "limit": 3, "unknown": 1}"#,
            LIMITS,
        )
        .unwrap();
        assert_eq!(
            (q.collections.as_slice(), q.limit),
            (["c".to_string()].as_slice(), 3)
        );
        assert_eq!(AssetQuery::from_json(b"", LIMITS).unwrap().limit, 10);
        let three = AssetQuery::from_json(br#"{"limit": 3.0}"#, LIMITS).unwrap();
        assert_eq!(three.limit, 3);
        for (body, name) in [
            (&b"[1]"[..], "body"),
            (b"{", "body"),
            (br#"{"ids": "a"}"#, "ids"),
            (br#"{"limit": 2.5}"#, "limit"),
            (br#"{"limit": 0.0}"#, "limit"),
            (br#"{"intersects": {"type": "Circle"}}"#, "intersects"),
            (br#"{"datetime": 5}"#, "datetime"),
            (br#"{"items": null}"#, "items"),
        ] {
            assert_eq!(AssetQuery::from_json(body, LIMITS).unwrap_err().name, name);
        }
    }

    #[test]
    fn tokens_round_trip_and_foreign_ones_are_refused() {
        let t = Token {
            backwards: true,
            key: Key {
                collection: "c/1".into(),
                item: "i".into(),
                sort_us: i64::MIN,
                id: "f é.nc".into(),
            },
        };
        assert_eq!(Token::decode(&t.encode()).unwrap(), t);
        assert!(Token::decode("WyJ4IiwiYyIsImkiLDEsImQiXQ").is_err());
        // The paging links carry the query as given.
        let q =
            get("datetime=2001-01-01T00:00:00Z/2002-01-01T00:00:00Z&bbox=170,-1,-170,1").unwrap();
        let pairs = q.to_pairs(Some(&t));
        assert!(pairs.contains(&("bbox".into(), "170,-1,-170,1".into())));
        assert_eq!(pairs.last().unwrap().1, t.encode());
        let again = AssetQuery::from_json(q.to_body(None).to_string().as_bytes(), LIMITS).unwrap();
        assert_eq!(again, q);
    }
}
