//! The metadata server and the OAuth token endpoint.

use std::time::{Instant, SystemTime, UNIX_EPOCH};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use bytes::Bytes;
use hyper::header::HeaderValue;
use hyper::{HeaderMap, Method, Response, StatusCode};
use serde_json::{Value, json};

use super::Shared;
use crate::fixture_server::http::{self, Body};

/// Allowed clock difference for `iat`.
const SKEW_S: i64 = 300;

fn new_token(shared: &Shared) -> (String, u64) {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(Instant::now().elapsed().as_nanos());
    let mut state = shared.state();
    h.write_usize(state.tokens.len());
    let token = format!("ya29.fixture-{:016x}{:04x}", h.finish(), state.stats.token_grants);
    state.tokens.insert(token.clone(), Instant::now() + shared.token_lifetime);
    state.stats.token_grants += 1;
    (token, shared.token_lifetime.as_secs().max(1))
}

fn token_answer(shared: &Shared) -> Value {
    let (token, expires_in) = new_token(shared);
    json!({"access_token": token, "expires_in": expires_in, "token_type": "Bearer"})
}

pub fn metadata(shared: &Shared, method: &Method, path: &str, headers: &HeaderMap) -> Response<Body> {
    shared.state().stats.metadata_requests += 1;
    if headers.get("Metadata-Flavor").and_then(|v| v.to_str().ok()) != Some("Google") {
        return http::text(
            StatusCode::FORBIDDEN,
            "Missing required header \"Metadata-Flavor\": \"Google\"\n",
        );
    }
    let mut response = match (method, path.trim_start_matches("/computeMetadata/v1/")) {
        (&Method::GET, "project/project-id") => http::text(StatusCode::OK, shared.project.clone()),
        (&Method::GET, "instance/zone") => {
            http::text(StatusCode::OK, format!("projects/123456789/zones/{}", shared.zone))
        }
        (&Method::GET, "instance/service-accounts/default/token") => {
            http::json(StatusCode::OK, token_answer(shared).to_string())
        }
        (&Method::GET, "instance/service-accounts/default/email") => {
            http::text(StatusCode::OK, shared.client_email.clone())
        }
        _ => http::text(StatusCode::NOT_FOUND, "Not Found\n"),
    };
    response.headers_mut().insert("Metadata-Flavor", HeaderValue::from_static("Google"));
    response
}

fn refuse(shared: &Shared, error: &str, description: &str) -> Response<Body> {
    shared.state().stats.token_refusals += 1;
    tracing::warn!(error, description, "Google emulation: token refused");
    http::json(StatusCode::BAD_REQUEST, json!({"error": error, "error_description": description}).to_string())
}

/// `POST /token` with `grant_type=urn:ietf:params:oauth:grant-type:jwt-bearer&assertion=JWT`.
pub fn grant(shared: &Shared, method: &Method, body: &Bytes) -> Response<Body> {
    if method != Method::POST {
        return http::text(StatusCode::METHOD_NOT_ALLOWED, "POST only\n");
    }
    let form: Vec<(String, String)> = url::form_urlencoded::parse(body).into_owned().collect();
    let field = |name: &str| form.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str());
    if field("grant_type") != Some("urn:ietf:params:oauth:grant-type:jwt-bearer") {
        return refuse(shared, "unsupported_grant_type", "Invalid grant_type.");
    }
    let Some(assertion) = field("assertion") else {
        return refuse(shared, "invalid_request", "Missing required parameter: assertion");
    };
    match check_assertion(shared, assertion) {
        Ok(()) => http::json(StatusCode::OK, token_answer(shared).to_string()),
        Err(description) => refuse(shared, "invalid_grant", &description),
    }
}

fn check_assertion(shared: &Shared, jwt: &str) -> Result<(), String> {
    let parts: Vec<&str> = jwt.split('.').collect();
    let [header, claims, signature] = parts[..] else {
        return Err("Invalid JWT: expected three dot-separated parts.".into());
    };
    let decode =
        |part: &str| URL_SAFE_NO_PAD.decode(part).map_err(|_| "Invalid JWT: not base64url.".to_string());
    let header: Value =
        serde_json::from_slice(&decode(header)?).map_err(|_| "Invalid JWT header.".to_string())?;
    if header["alg"] != "RS256" {
        return Err(format!("Invalid JWT: alg {} is not RS256.", header["alg"]));
    }
    let public = ring::signature::UnparsedPublicKey::new(
        &ring::signature::RSA_PKCS1_2048_8192_SHA256,
        shared.public_key.as_slice(),
    );
    let signed = &jwt[..jwt.rfind('.').unwrap_or(0)];
    if public.verify(signed.as_bytes(), &decode(signature)?).is_err() {
        return Err("Invalid JWT Signature.".into());
    }
    let claims: Value =
        serde_json::from_slice(&decode(claims)?).map_err(|_| "Invalid JWT claims.".to_string())?;
    if claims["aud"].as_str() != Some(shared.token_uri().as_str()) {
        return Err(format!("Invalid JWT: aud {} is not {}.", claims["aud"], shared.token_uri()));
    }
    if claims["iss"].as_str() != Some(shared.client_email.as_str()) {
        return Err(format!("Invalid JWT: iss {} is not a known service account.", claims["iss"]));
    }
    if claims["scope"].as_str().is_none_or(str::is_empty) {
        return Err("Invalid JWT: no scope.".into());
    }
    let now = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs() as i64);
    let (Some(iat), Some(exp)) = (claims["iat"].as_i64(), claims["exp"].as_i64()) else {
        return Err("Invalid JWT: iat and exp are required.".into());
    };
    if iat > now + SKEW_S || exp <= now || exp - iat > 3600 {
        return Err("Invalid JWT: Token must be a short-lived token (60 minutes) and in a reasonable timeframe. Check your iat and exp values in the JWT claim.".into());
    }
    Ok(())
}
