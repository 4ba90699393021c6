//! The database users behind database-engine leases: Vault's lease API (`sys/leases/lookup`)
//! never names the user a credential created, so they are found in the database itself. A
//! lease's `expire_time` is the `VALID UNTIL` its creation statement gave the user
//! (`VALID UNTIL '{{expiration}}'`, the PostgreSQL plugin's documented statement), and the
//! default `username_template` (`v-<display name>-<role, 8 chars>-<random>-<unix time>`)
//! carries the role's name. Vault gives the database an expiration 5 s later than the lease's
//! (a buffer, so that the user outlives its lease: `path_creds_create.go`), and PostgreSQL keeps
//! whole seconds. A PostgreSQL login role matches the leases of a Vault role when its
//! `rolvaliduntil` is between 1 s before and [`BUFFER_MAX`] s after one of their expiry times and
//! its name holds the Vault role's name (its first 8 characters). Reads `pg_roles` only; never
//! writes.

use std::collections::BTreeSet;
use std::time::Duration;

use serde_json::{json, Value as Json};

use super::{raw, Method, VaultClients};
use crate::provider::ProviderError;

/// How long a connection to the database may take, in seconds.
const CONNECT_TIMEOUT: u64 = 10;

/// How many seconds a user's `VALID UNTIL` may follow its lease's `expire_time` (Vault's 5 s
/// buffer, and a second of rounding).
pub const BUFFER_MAX: f64 = 6.0;

/// How many lease lookups run at once.
const LOOKUPS_AT_ONCE: usize = 16;

/// A lease's expiry, as `sys/leases/lookup` gives it.
pub struct Expiry {
    /// The lease id, e.g. `database/creds/readonly/AbC...`.
    pub id: String,
    /// The Vault role it belongs to (`readonly`).
    pub role: String,
    /// `expire_time` in seconds since the Unix epoch (fractional); None for a lease that does
    /// not expire.
    pub expires: Option<f64>,
}

/// Looks up each lease's `expire_time` (`PUT /v1/sys/leases/lookup` with `lease_id`), at most
/// [`LOOKUPS_AT_ONCE`] at a time. `leases` are (lease id, role) pairs; a lease gone meanwhile
/// (404) is left out.
///
/// # Errors
///
/// The server's answer to a lookup, or what kept it from answering.
pub async fn expiries(
    clients: &VaultClients,
    leases: &[(String, String)],
) -> Result<Vec<Expiry>, ProviderError> {
    let bodies: Vec<Json> = leases
        .iter()
        .map(|(id, _)| json!({ "lease_id": id }))
        .collect();
    let mut answers = Vec::with_capacity(bodies.len());
    for chunk in bodies.chunks(LOOKUPS_AT_ONCE) {
        // Collected first, so that the awaited type holds no closure (async_trait's Send).
        let lookups: Vec<_> = chunk
            .iter()
            .map(|body| {
                raw(
                    clients,
                    Method::Put,
                    "sys/leases/lookup",
                    body,
                    "look up a lease's expiry",
                )
            })
            .collect();
        answers.extend(futures::future::join_all(lookups).await);
    }
    let mut out = Vec::with_capacity(leases.len());
    for ((id, role), answer) in leases.iter().zip(answers) {
        let Some(answer) = answer? else { continue };
        let expires = answer
            .pointer("/data/expire_time")
            .and_then(Json::as_str)
            .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
            .map(|t| t.timestamp_micros() as f64 / 1e6);
        out.push(Expiry {
            id: id.clone(),
            role: role.clone(),
            expires,
        });
    }
    Ok(out)
}

/// Where a database URL points, for messages: `host:port/dbname`, never the user or password.
pub fn describe(url: &str) -> String {
    match url.parse::<tokio_postgres::Config>() {
        Ok(c) => {
            let host = c
                .get_hosts()
                .first()
                .map(|h| match h {
                    tokio_postgres::config::Host::Tcp(h) => h.clone(),
                    tokio_postgres::config::Host::Unix(p) => p.display().to_string(),
                })
                .unwrap_or_else(|| "localhost".into());
            let port = c.get_ports().first().copied().unwrap_or(5432);
            format!("{host}:{port}/{}", c.get_dbname().unwrap_or("postgres"))
        }
        Err(_) => "(unparsable database_url)".into(),
    }
}

/// The login roles of the PostgreSQL database at `url` that have a `VALID UNTIL`: (name,
/// expiry in seconds since the Unix epoch).
///
/// # Errors
///
/// A `url` that does not parse, a connection that fails or takes more than
/// [`CONNECT_TIMEOUT`] seconds, or a query the server refuses; the message names the
/// database's host and port, never the URL's password.
pub async fn login_roles(url: &str) -> Result<Vec<(String, f64)>, ProviderError> {
    let at = describe(url);
    let config: tokio_postgres::Config = url.parse().map_err(|e| {
        ProviderError::new(format!(
            "`database_url` is not a PostgreSQL connection string ({e})"
        ))
    })?;
    let connect = config.connect(tokio_postgres::NoTls);
    let (client, connection) = tokio::time::timeout(Duration::from_secs(CONNECT_TIMEOUT), connect)
        .await
        .map_err(|_| {
            ProviderError::new(format!(
                "connect to the database at {at}: no answer in {CONNECT_TIMEOUT} s"
            ))
        })?
        .map_err(|e| ProviderError::new(format!("connect to the database at {at}: {e}")))?;
    let task = tokio::spawn(connection);
    let rows = client
        .query(
            "SELECT rolname::text, extract(epoch FROM rolvaliduntil)::float8 \
             FROM pg_roles WHERE rolcanlogin AND rolvaliduntil IS NOT NULL \
             AND rolvaliduntil <> 'infinity'",
            &[],
        )
        .await
        .map_err(|e| ProviderError::new(format!("list the login roles at {at}: {e}")));
    drop(client);
    let _ = task.await;
    Ok(rows?
        .iter()
        .map(|r| (r.get::<_, String>(0), r.get::<_, f64>(1)))
        .collect())
}

/// The database users of `leases` among `roles` (see the module's doc for the rule), sorted,
/// and the ids of the leases none was found for.
pub fn match_users(leases: &[Expiry], roles: &[(String, f64)]) -> (Vec<String>, Vec<String>) {
    let mut users = BTreeSet::new();
    let mut unmatched = Vec::new();
    for lease in leases {
        let short: String = lease.role.chars().take(8).collect();
        let found: Vec<&String> = match lease.expires {
            Some(at) => roles
                .iter()
                .filter(|(name, until)| {
                    (-1.0..=BUFFER_MAX).contains(&(until - at)) && name.contains(&short)
                })
                .map(|(name, _)| name)
                .collect(),
            None => Vec::new(),
        };
        if found.is_empty() {
            unmatched.push(lease.id.clone());
        }
        users.extend(found.into_iter().cloned());
    }
    (users.into_iter().collect(), unmatched)
}

/// The database users the `leases` ((id, role) pairs) stand for, as a JSON object
/// `{"database_users": [NAME, ...], "unmatched": [LEASE ID, ...]}`.
///
/// # Errors
///
/// A failed lease lookup or database query (see [`expiries`], [`login_roles`]).
pub async fn users_of(
    clients: &VaultClients,
    url: &str,
    leases: &[(String, String)],
) -> Result<Json, ProviderError> {
    let expiries = expiries(clients, leases).await?;
    let roles = login_roles(url).await?;
    let (users, unmatched) = match_users(&expiries, &roles);
    Ok(json!({ "database_users": users, "unmatched": unmatched }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lease(id: &str, role: &str, expires: Option<f64>) -> Expiry {
        Expiry {
            id: id.into(),
            role: role.into(),
            expires,
        }
    }

    #[test]
    fn users_match_by_expiry_within_a_second_and_the_role_in_the_name() {
        let roles = vec![
            // Vault's 5 s buffer, PostgreSQL's whole seconds.
            (
                "v-root-readonly-aaa-1700000000".to_string(),
                1_700_003_605.0,
            ),
            (
                "v-root-readonly-bbb-1700000000".to_string(),
                1_700_003_606.0,
            ),
            // Same expiry, another role: not one of these leases' users.
            ("v-root-other-ccc-1700000000".to_string(), 1_700_003_605.0),
            // The role's name, but another expiry (7 s after: too late).
            (
                "v-root-readonly-ddd-1700000000".to_string(),
                1_700_003_608.0,
            ),
        ];
        let leases = vec![
            lease(
                "database/creds/readonly/1",
                "readonly",
                Some(1_700_003_600.4),
            ),
            lease(
                "database/creds/readonly/2",
                "readonly",
                Some(1_700_003_600.9),
            ),
            lease("database/creds/readonly/3", "readonly", None),
        ];
        let (users, unmatched) = match_users(&leases, &roles);
        assert_eq!(
            users,
            vec![
                "v-root-readonly-aaa-1700000000".to_string(),
                "v-root-readonly-bbb-1700000000".to_string()
            ]
        );
        assert_eq!(unmatched, vec!["database/creds/readonly/3".to_string()]);
    }

    #[test]
    fn a_long_role_name_matches_its_first_eight_characters() {
        let roles = vec![("v-root-reportin-x-1".to_string(), 105.0)];
        let leases = vec![lease("db/creds/reporting/1", "reporting", Some(100.2))];
        assert_eq!(match_users(&leases, &roles).0, vec!["v-root-reportin-x-1"]);
    }

    #[test]
    fn the_description_of_a_url_never_holds_its_password() {
        let d = describe("postgresql://admin:hunter2@db.example.com:5433/app?sslmode=disable");
        assert_eq!(d, "db.example.com:5433/app");
        assert!(!d.contains("hunter2"));
    }
}
