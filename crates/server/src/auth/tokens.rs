//! Tokens as etcd issues them: simple tokens (random, assigned through raft, forgotten when
//! idle) or JWTs signed and checked with the configured keys.

use oxcd_api::EtcdError;
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

pub(super) struct SimpleToken {
    user: String,
    last_used: Instant,
}

/// How this member issues and checks tokens (`--auth-token`).
pub(super) enum Tokens {
    Simple {
        ttl: Duration,
        live: Mutex<HashMap<String, SimpleToken>>,
    },
    Jwt(Box<Jwt>),
}

pub(super) struct Jwt {
    algorithm: jsonwebtoken::Algorithm,
    signing: Option<jsonwebtoken::EncodingKey>,
    verifying: jsonwebtoken::DecodingKey,
    ttl: Duration,
}

#[derive(serde::Serialize, serde::Deserialize)]
struct Claims {
    username: String,
    revision: u64,
    exp: u64,
}

impl Tokens {
    /// `--auth-token` as etcd reads it: `simple`, or `jwt,pub-key=FILE,priv-key=FILE,sign-method=RS256,ttl=5m`.
    pub fn parse(option: &str, simple_ttl: Duration) -> Result<Tokens, String> {
        let mut parts = option.split(',');
        match parts.next().unwrap_or_default() {
            "simple" => Ok(Tokens::Simple {
                ttl: simple_ttl,
                live: Mutex::default(),
            }),
            "jwt" => {
                let mut opts = HashMap::new();
                for p in parts {
                    let (k, v) = p
                        .split_once('=')
                        .ok_or_else(|| format!("auth: invalid auth options: {p:?}"))?;
                    opts.insert(k, v);
                }
                let method = opts.get("sign-method").copied().unwrap_or("");
                let algorithm: jsonwebtoken::Algorithm = method
                    .parse()
                    .map_err(|_| "auth: invalid auth signature method".to_string())?;
                let ttl = match opts.get("ttl") {
                    Some(t) => crate::duration::parse_go_duration(t)
                        .ok_or_else(|| format!("auth: invalid auth options: ttl={t}"))?,
                    None => Duration::from_secs(300),
                };
                let read = |key: &str| -> Result<Option<Vec<u8>>, String> {
                    match opts.get(key) {
                        Some(path) => std::fs::read(path)
                            .map(Some)
                            .map_err(|e| format!("auth: {key} {path}: {e}")),
                        None => Ok(None),
                    }
                };
                use jsonwebtoken::{Algorithm::*, DecodingKey, EncodingKey};
                let bad = |e: jsonwebtoken::errors::Error| format!("auth: {method} key: {e}");
                let (signing, verifying) = match algorithm {
                    RS256 | RS384 | RS512 | PS256 | PS384 | PS512 => (
                        read("priv-key")?
                            .map(|k| EncodingKey::from_rsa_pem(&k))
                            .transpose()
                            .map_err(bad)?,
                        read("pub-key")?.map(|k| DecodingKey::from_rsa_pem(&k).map_err(bad)),
                    ),
                    ES256 | ES384 => (
                        read("priv-key")?
                            .map(|k| EncodingKey::from_ec_pem(&k))
                            .transpose()
                            .map_err(bad)?,
                        read("pub-key")?.map(|k| DecodingKey::from_ec_pem(&k).map_err(bad)),
                    ),
                    HS256 | HS384 | HS512 => {
                        let secret = read("priv-key")?.ok_or("auth: missing key data")?;
                        (
                            Some(EncodingKey::from_secret(&secret)),
                            Some(Ok(DecodingKey::from_secret(&secret))),
                        )
                    }
                    _ => return Err("auth: invalid auth signature method".into()),
                };
                let verifying = verifying.ok_or("auth: missing key data")??;
                Ok(Tokens::Jwt(Box::new(Jwt {
                    algorithm,
                    signing,
                    verifying,
                    ttl,
                })))
            }
            other => Err(format!("unknown token type: {other}")),
        }
    }

    /// A signed token for `user` as of auth `revision`; `None` with simple tokens (they are
    /// assigned through raft).
    pub fn sign(&self, user: &str, revision: u64) -> Option<Result<String, EtcdError>> {
        let Tokens::Jwt(jwt) = self else {
            return None;
        };
        let Some(key) = &jwt.signing else {
            return Some(Err(EtcdError::Internal(
                "auth: token signing attempted with verify-only key".into(),
            )));
        };
        let claims = Claims {
            username: user.to_string(),
            revision,
            exp: now_unix() + jwt.ttl.as_secs(),
        };
        Some(
            jsonwebtoken::encode(&jsonwebtoken::Header::new(jwt.algorithm), &claims, key)
                .map_err(|e| EtcdError::Internal(format!("auth: {e}"))),
        )
    }

    /// The user a live token stands for.
    pub fn user_of(&self, token: &str) -> Result<String, EtcdError> {
        match self {
            Tokens::Simple { ttl, live } => {
                let mut live = live.lock().unwrap_or_else(|p| p.into_inner());
                match live.get_mut(token) {
                    Some(t) if t.last_used.elapsed() < *ttl => {
                        t.last_used = Instant::now();
                        Ok(t.user.clone())
                    }
                    Some(_) => {
                        live.remove(token);
                        Err(EtcdError::InvalidAuthToken)
                    }
                    None => Err(EtcdError::InvalidAuthToken),
                }
            }
            Tokens::Jwt(jwt) => {
                let mut validation = jsonwebtoken::Validation::new(jwt.algorithm);
                validation.leeway = 0;
                validation.required_spec_claims = ["exp".to_string()].into();
                jsonwebtoken::decode::<Claims>(token, &jwt.verifying, &validation)
                    .map(|d| d.claims.username)
                    .map_err(|_| EtcdError::InvalidAuthToken)
            }
        }
    }

    /// A simple token assigned through raft (an Authenticate applied); idle ones go.
    pub fn assign(&self, token: &str, user: &str) {
        if let Tokens::Simple { live, ttl } = self {
            let mut live = live.lock().unwrap_or_else(|p| p.into_inner());
            live.retain(|_, t| t.last_used.elapsed() < *ttl);
            live.insert(
                token.to_string(),
                SimpleToken {
                    user: user.to_string(),
                    last_used: Instant::now(),
                },
            );
        }
    }

    /// Forgets the simple tokens of `of_user`, or every one.
    pub fn drop_of(&self, of_user: Option<&str>) {
        if let Tokens::Simple { live, .. } = self {
            let mut live = live.lock().unwrap_or_else(|p| p.into_inner());
            live.retain(|_, t| of_user.is_some_and(|u| t.user != u));
        }
    }
}

fn now_unix() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// A new simple token's random part (etcd: 16 letters, then "." and a number).
pub(super) fn simple_token_prefix() -> String {
    use rand::Rng;
    const LETTERS: &[u8] = b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ";
    let mut rng = rand::thread_rng();
    (0..16)
        .map(|_| LETTERS[rng.gen_range(0..LETTERS.len())] as char)
        .collect()
}
