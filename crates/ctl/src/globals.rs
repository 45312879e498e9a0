//! The global flags, read once: endpoints, timeouts, the output printer, credentials, and how
//! to dial (etcdctl's TLS flags, through oxcd-client's TLS settings).

use crate::error::{CtlError, Result, EXIT_BAD_ARGS, EXIT_BAD_FEATURE};
use crate::flags::{flag, string};
use crate::gofmt;
use crate::printer::{Format, Selected};
use clap::ArgMatches;
use oxcd_client::{ClientTls, Dialer};
use std::time::Duration;

pub struct Globals {
    pub endpoints: Vec<String>,
    pub dialer: Dialer,
    pub command_timeout: Duration,
    pub printer: Selected,
    pub user: String,
    pub password: String,
}

impl Globals {
    pub fn from_matches(m: &ArgMatches) -> Result<Globals> {
        let dur = |name: &str| {
            gofmt::parse_duration(&string(m, name)).map_err(|e| {
                CtlError::new(
                    EXIT_BAD_ARGS,
                    format!(
                        "invalid argument {} for \"--{name}\" flag: {e}",
                        gofmt::quote(string(m, name).as_bytes())
                    ),
                )
            })
        };
        let w = string(m, "write-out");
        let format = Format::parse(&w)
            .map_err(|_| CtlError::new(EXIT_BAD_FEATURE, format!("unknown output format {w}")))?;
        Ok(Globals {
            endpoints: m
                .get_many::<String>("endpoints")
                .map(|v| v.cloned().collect())
                .unwrap_or_default(),
            dialer: dialer(m, dur("dial-timeout")?)?,
            command_timeout: dur("command-timeout")?,
            printer: Selected::new(format, flag(m, "hex")),
            user: string(m, "user"),
            password: string(m, "password"),
        })
    }
}

/// The CA, certificate and key files named by the flags `names` (in that order).
pub fn tls_files(m: &ArgMatches, names: [&str; 3]) -> ClientTls {
    let path = |name: &str| {
        Some(string(m, name))
            .filter(|s| !s.is_empty())
            .map(Into::into)
    };
    ClientTls {
        ca_file: path(names[0]),
        cert_file: path(names[1]),
        key_file: path(names[2]),
        skip_verify: false,
    }
}

pub fn any_file(settings: &ClientTls) -> bool {
    settings.ca_file.is_some() || settings.cert_file.is_some() || settings.key_file.is_some()
}

/// etcdctl's TLS flags: TLS for https endpoints, and for bare ones once any TLS flag is set.
fn dialer(m: &ArgMatches, timeout: Duration) -> Result<Dialer> {
    let mut settings = tls_files(m, ["cacert", "cert", "key"]);
    settings.skip_verify = flag(m, "insecure-skip-tls-verify");
    let any_flag = any_file(&settings) || settings.skip_verify;
    tls_dialer(settings, any_flag, timeout)
}

/// A dialer with `settings`; `any_flag`: a TLS flag was given, so bare endpoints use TLS.
pub fn tls_dialer(settings: ClientTls, any_flag: bool, timeout: Duration) -> Result<Dialer> {
    let tls = if any_flag {
        let config = oxcd_client::tls::client_config(&settings)
            .map_err(|msg| CtlError::new(EXIT_BAD_ARGS, msg))?;
        Some(config)
    } else {
        None
    };
    Ok(Dialer {
        timeout,
        tls,
        tls_by_default: any_flag,
    })
}
