//! go-livepeer's CLI write routes on a gateway (`server/handlers.go`): `/setBroadcastConfig`
//! and `/setMaxPriceForCapability`, which change the price caps selection and payments obey
//! while the gateway runs, with go-livepeer's parameters and plain-text errors.
//!
//! Their form ([`GoForm`]) is what `livepeer_cli` sends: a form-encoded POST. go-livepeer takes
//! any method (`r.FormValue` reads the query too); here a write must be a POST, because without
//! `--admin-token` the admin port trusts the operator's machine, and a web page open on it can
//! make the browser send a GET (an image, a link) that carries no `Origin` for the loopback
//! guard to refuse, nor, in an older browser, a `Sec-Fetch-Site` for the CLI routes' own check
//! (`cli`). A cross-site POST carries an `Origin`, and the guard refuses it.

use axum::extract::{FromRequest, Request};
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::response::Response;

use super::cli_reply::{bad_request, error, gcd, ok};
use crate::orchestrator::Pool;
use crate::orchestrator::caps::MAX_MODEL_CHARS;
use crate::orchestrator::price::Price;
use crate::orchestrator::requirements::MAX_MODEL_CAPS;
use crate::transcode::Profile;

/// Bytes of a form body, at most: a few parameters.
const MAX_FORM: usize = 64 * 1024;

/// Parameters of a write, query and body together, at most (`livepeer_cli` sends five).
const MAX_PAIRS: usize = 64;

const MISSING: &str =
    "missing form params (maxPricePerUnit AND pixelsPerUnit) or transcodingOptions";

/// A CLI write's parameters as go-livepeer's `r.FormValue` reads them: the form-encoded body's
/// first, then the query's.
#[derive(Debug, Default)]
pub(super) struct GoForm {
    body: Vec<(String, String)>,
    query: Vec<(String, String)>,
}

impl GoForm {
    /// The first value of `name`, `""` when absent (as `FormValue`).
    pub(super) fn value(&self, name: &str) -> &str {
        self.body.iter().chain(&self.query).find(|(k, _)| k == name).map_or("", |(_, v)| v.as_str())
    }
}

impl<S: Send + Sync> FromRequest<S> for GoForm {
    type Rejection = Response;

    async fn from_request(req: Request, _state: &S) -> Result<Self, Response> {
        if req.method() != Method::POST {
            let mut refusal = error(
                StatusCode::METHOD_NOT_ALLOWED,
                "this route changes the gateway: send a form-encoded POST (a GET could come \
                 from any web page's image or link)",
            );
            refusal.headers_mut().insert(header::ALLOW, HeaderValue::from_static("POST"));
            return Err(refusal);
        }
        let form_body = req
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|t| t.trim_start().starts_with("application/x-www-form-urlencoded"));
        let too_many = || bad_request(format!("too many form params: at most {MAX_PAIRS}"));
        let query = pairs(req.uri().query().unwrap_or_default(), MAX_PAIRS).ok_or_else(too_many)?;
        let bytes = axum::body::to_bytes(req.into_body(), MAX_FORM).await.map_err(|_| {
            error(StatusCode::PAYLOAD_TOO_LARGE, format!("form over {MAX_FORM} bytes"))
        })?;
        // Go's `ParseForm` reads the body of a form-encoded POST only; other bodies are ignored.
        let body = if form_body {
            pairs(&String::from_utf8_lossy(&bytes), MAX_PAIRS - query.len()).ok_or_else(too_many)?
        } else {
            Vec::new()
        };
        Ok(Self { body, query })
    }
}

/// The pairs of `text`, `None` when there are more than `room` (a 400): a request head of up to
/// 1 MiB could otherwise make the list as long as it likes (go-livepeer takes any number).
fn pairs(text: &str, room: usize) -> Option<Vec<(String, String)>> {
    let found: Vec<(String, String)> =
        url::form_urlencoded::parse(text.as_bytes()).into_owned().take(room + 1).collect();
    (found.len() <= room).then_some(found)
}

/// `/setBroadcastConfig`: the global price cap (`maxPricePerUnit` / `pixelsPerUnit` in
/// `currency`; 0 accepts any price) and the default renditions (`transcodingOptions`, preset
/// names). Checked whole before anything changes, unlike go-livepeer, which sets the price
/// before it finds the presets invalid. `defaults` are the renditions streams now get.
pub(super) fn set_broadcast_config(pool: &Pool, defaults: &[Profile], form: &GoForm) -> Response {
    let (per_unit, pixels) = (form.value("maxPricePerUnit"), form.value("pixelsPerUnit"));
    let options = form.value("transcodingOptions");
    let with_price = !per_unit.is_empty() && !pixels.is_empty();
    if !with_price && options.is_empty() {
        return bad_request(MISSING);
    }
    let price = if with_price {
        match max_price(per_unit, pixels, form.value("currency")) {
            Ok(price) => Some(price),
            Err(message) => return bad_request(message),
        }
    } else {
        None
    };
    if !options.is_empty() {
        // go-livepeer keeps the names it knows and drops the others silently.
        let names: Vec<&str> = options
            .split(',')
            .map(str::trim)
            .filter(|n| crate::transcode::profiles::preset(n).is_some())
            .collect();
        if names.is_empty() {
            return bad_request(format!("invalid transcoding options: {options}"));
        }
        let current: Vec<&str> = defaults.iter().map(|p| p.name.as_str()).collect();
        if !same_presets(&names, &current) {
            // The streams read their defaults from the transcoding settings made at start,
            // which cannot change yet: say so rather than pretend.
            let message = format!(
                "transcodingOptions cannot change while the gateway runs yet (streams get {}; \
                 restart with --transcoding-options {}); nothing was changed",
                current.join(","),
                names.join(",")
            );
            return error(StatusCode::NOT_IMPLEMENTED, message);
        }
    }
    if let Some(price) = price {
        let cap = (!price.is_zero()).then_some(price);
        pool.set_max_price(cap);
        tracing::info!(max_price = ?cap.map(|p| p.to_string()), "max price set through /setBroadcastConfig");
    }
    ok()
}

/// Whether `asked` names the presets of `running`, in any order: `livepeer_cli` always sends
/// `transcodingOptions`, in the order its operator typed their numbers, so a cap set with the
/// running presets retyped in another order must not be refused. (go-livepeer would reorder
/// the renditions; here their order stays as it is.) A preset named twice is not the same.
fn same_presets(asked: &[&str], running: &[&str]) -> bool {
    let (mut asked, mut running) = (asked.to_vec(), running.to_vec());
    asked.sort_unstable();
    running.sort_unstable();
    asked == running
}

/// `/setMaxPriceForCapability`: the price cap of one pipeline's model (`modelID`, or `default`
/// for the whole pipeline); every parameter is required and the price must be above 0.
pub(super) fn set_max_price_for_capability(pool: &Pool, form: &GoForm) -> Response {
    for name in ["maxPricePerUnit", "pixelsPerUnit", "currency", "pipeline", "modelID"] {
        if form.value(name).is_empty() {
            return bad_request(format!("missing form param: {name}"));
        }
    }
    let (pipeline, model) = (form.value("pipeline"), form.value("modelID"));
    let Some(capability) = crate::job::pipeline_capability(pipeline) else {
        return bad_request("pipeline not supported");
    };
    if model.chars().nth(MAX_MODEL_CHARS).is_some() {
        return bad_request(format!("modelID longer than {MAX_MODEL_CHARS} characters"));
    }
    let price = match max_price(
        form.value("maxPricePerUnit"),
        form.value("pixelsPerUnit"),
        form.value("currency"),
    ) {
        Ok(price) => price,
        Err(message) => return bad_request(message),
    };
    if price.is_zero() {
        return bad_request("pricePerPixel needs to be > 0: 0.000");
    }
    if pool.set_max_price_for(capability, model, price).is_err() {
        return bad_request(format!(
            "too many price caps per capability: at most {MAX_MODEL_CAPS} pipeline and modelID \
             pairs; set one already there (a modelID's cap, or the pipeline's default)"
        ));
    }
    tracing::info!(%pipeline, model_id = %model, max_price = %price, "max price set through /setMaxPriceForCapability");
    ok()
}

/// The price `per_unit / pixels` in `currency`, in wei per unit, or go-livepeer's message
/// for the 400. A negative price is refused (go-livepeer takes it as "any price").
fn max_price(per_unit: &str, pixels: &str, currency: &str) -> Result<Price, String> {
    let parse_error = |what: &str, value: &str| format!("Error parsing {what} value: {value}");
    for (what, value) in [("pricePerUnit", per_unit), ("pixelsPerUnit", pixels)] {
        if base_prefixed_fraction(value) {
            return Err(format!(
                "{}: go-livepeer reads a fraction's integers with a leading 0 in another base \
                 (010/1 is 8, 0x10/1 is 16); write them without it",
                parse_error(what, value)
            ));
        }
    }
    let price = parse_rat(per_unit).ok_or_else(|| parse_error("pricePerUnit", per_unit))?;
    let units = parse_rat(pixels).ok_or_else(|| parse_error("pixelsPerUnit", pixels))?;
    if units.negative || units.num == 0 {
        return Err(format!("pixels per unit must be greater than 0, provided {pixels}"));
    }
    if price.negative && price.num != 0 {
        return Err(format!("Error parsing pricePerUnit value: {per_unit}: must not be negative"));
    }
    let wei = match currency.to_ascii_lowercase().as_str() {
        "" | "wei" => 1,
        "eth" => 10u128.pow(18),
        _ => {
            return Err(format!(
                "error converting price: {currency} needs a price feed, which max prices do not \
                 support yet; give the price in wei or ETH"
            ));
        }
    };
    let too_big = || format!("price {per_unit}/{pixels} {currency} is too large or too precise");
    let (num, den) = mul((price.num, price.den), (wei, 1)).ok_or_else(too_big)?;
    let (num, den) = mul((num, den), (units.den, units.num)).ok_or_else(too_big)?;
    let num = i64::try_from(num).map_err(|_| too_big())?;
    let den = i64::try_from(den).map_err(|_| too_big())?;
    Price::new(num, den).map_err(|_| too_big())
}

/// A rational as Go's `big.Rat.SetString` reads it (its decimal forms), sign apart.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Rat {
    negative: bool,
    num: u128,
    den: u128,
}

/// `a/b`, or a decimal with an optional fraction and exponent (`1000`, `0.5`, `.5`, `1e3`,
/// `2.5E-3`), optionally signed; `None` when malformed or beyond 128 bits.
fn parse_rat(text: &str) -> Option<Rat> {
    let (negative, rest) = match text.as_bytes().first() {
        Some(b'-') => (true, &text[1..]),
        Some(b'+') => (false, &text[1..]),
        _ => (false, text),
    };
    if let Some((num, den)) = rest.split_once('/') {
        // Go reads these with their base prefixes (`0`, `0x`, `0o`, `0b`), which we do not.
        if [num, den].iter().any(|n| base_prefixed(n)) {
            return None;
        }
        let (num, den) = (digits(num)?, digits(den)?);
        return (den != 0).then_some(Rat { negative, num, den });
    }
    let (mantissa, exponent) = match rest.find(['e', 'E']) {
        Some(i) => (&rest[..i], exponent(&rest[i + 1..])?),
        None => (rest, 0),
    };
    let (int, frac) = mantissa.split_once('.').unwrap_or((mantissa, ""));
    if int.is_empty() && frac.is_empty() {
        return None;
    }
    let all = format!("{int}{frac}");
    let num = digits(&all)?;
    let scale = exponent - i32::try_from(frac.len()).ok()?;
    let ten = |n: i32| 10u128.checked_pow(n.unsigned_abs());
    if scale >= 0 {
        Some(Rat { negative, num: num.checked_mul(ten(scale)?)?, den: 1 })
    } else {
        Some(Rat { negative, num, den: ten(scale)? })
    }
}

/// Whether `text` is `a/b` (optionally signed) with an integer go-livepeer's `big.Rat` reads in
/// another base than we do.
fn base_prefixed_fraction(text: &str) -> bool {
    let unsigned = text.strip_prefix(['-', '+']).unwrap_or(text);
    unsigned.split_once('/').is_some_and(|(num, den)| base_prefixed(num) || base_prefixed(den))
}

/// Whether `int` is more than one character from a leading `0`: in a fraction Go's
/// `big.Rat.SetString` reads it with base 0 (`010` octal, `0x10` hexadecimal), where a decimal
/// reading could set a higher cap than go-livepeer would.
fn base_prefixed(int: &str) -> bool {
    int.len() > 1 && int.starts_with('0')
}

/// A run of ASCII digits as a number; `None` when empty, not digits, or too large.
fn digits(text: &str) -> Option<u128> {
    if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    text.parse().ok()
}

/// An exponent: optionally signed digits, within what a `u128` can scale by.
fn exponent(text: &str) -> Option<i32> {
    let (negative, rest) = match text.as_bytes().first() {
        Some(b'-') => (true, &text[1..]),
        Some(b'+') => (false, &text[1..]),
        _ => (false, text),
    };
    let n = i32::try_from(digits(rest)?).ok().filter(|n| *n <= 76)?;
    Some(if negative { -n } else { n })
}

/// `a × b` of two fractions, in lowest terms; `None` on overflow. Cross-reduced first, so that
/// only a result that does not fit overflows.
fn mul((n1, d1): (u128, u128), (n2, d2): (u128, u128)) -> Option<(u128, u128)> {
    let (g1, g2) = (gcd(n1, d2).max(1), gcd(n2, d1).max(1));
    let num = (n1 / g1).checked_mul(n2 / g2)?;
    let den = (d1 / g2).checked_mul(d2 / g1)?;
    let g = gcd(num, den).max(1);
    Some((num / g, den / g))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rat(text: &str) -> Option<(bool, u128, u128)> {
        parse_rat(text).map(|r| {
            let g = gcd(r.num, r.den).max(1);
            (r.negative, r.num / g, r.den / g)
        })
    }

    #[test]
    fn rationals_parse_as_go_reads_them() {
        assert_eq!(rat("1000"), Some((false, 1000, 1)));
        assert_eq!(rat("0.5"), Some((false, 1, 2)));
        assert_eq!(rat(".5"), Some((false, 1, 2)));
        assert_eq!(rat("1."), Some((false, 1, 1)));
        assert_eq!(rat("1e3"), Some((false, 1000, 1)));
        assert_eq!(rat("2.5E-3"), Some((false, 1, 400)));
        assert_eq!(rat("-3/6"), Some((true, 1, 2)));
        assert_eq!(rat("+7"), Some((false, 7, 1)));
        for bad in ["", ".", "abc", "1/0", "1/-2", "1e", "e3", "1.2.3", "1 ", "0x10", "1e99"] {
            assert_eq!(rat(bad), None, "{bad:?}");
        }
    }

    /// Go's `big.Rat` reads a fraction's integers with base prefixes (`010/1` is 8): refused,
    /// so that no cap is read higher than go-livepeer would read it. A decimal's leading 0 is
    /// decimal in Go too.
    #[test]
    fn fractions_with_base_prefixes_are_refused() {
        for bad in ["010/1", "0x10/1", "1/010", "-010/1", "+00/1", "0b1/1", "0o7/1", "1/0X2"] {
            assert_eq!(rat(bad), None, "{bad:?}");
            let message = max_price(bad, "1", "").unwrap_err();
            assert!(message.contains("leading 0 in another base"), "{bad}: {message}");
            assert!(max_price("1", bad, "").is_err(), "{bad} pixels");
        }
        assert_eq!(rat("0/5"), Some((false, 0, 1)));
        assert_eq!(rat("10/100"), Some((false, 1, 10)));
        assert_eq!(rat("010"), Some((false, 10, 1)), "Go reads a decimal's leading 0 as decimal");
        assert_eq!(rat("00.5"), Some((false, 1, 2)));
    }

    #[test]
    fn prices_are_per_unit_over_pixels_in_wei() {
        let p = |a, b, c| max_price(a, b, c).map_err(|_| StatusCode::BAD_REQUEST);
        assert_eq!(p("1000", "1", "Wei"), Ok(Price::new(1000, 1).unwrap()));
        assert_eq!(p("5", "2", ""), Ok(Price::new(5, 2).unwrap()));
        assert_eq!(p("0.5", "1e12", "wei"), Ok(Price::new(1, 2_000_000_000_000).unwrap()));
        assert_eq!(p("0.000001", "1", "ETH"), Ok(Price::new(1_000_000_000_000, 1).unwrap()));
        assert_eq!(p("0", "1", "Wei"), Ok(Price::ZERO));
        for bad in
            [("x", "1", ""), ("1", "0", ""), ("1", "-1", ""), ("-1", "1", ""), ("1", "1", "USD")]
        {
            assert_eq!(p(bad.0, bad.1, bad.2), Err(StatusCode::BAD_REQUEST), "{bad:?}");
        }
        assert_eq!(p("1e30", "1", ""), Err(StatusCode::BAD_REQUEST), "beyond i64");
    }
}
