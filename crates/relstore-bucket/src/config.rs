//! How to reach a bucket: the `s3://BUCKET/PREFIX` URL, the endpoint, region and credentials
//! (the standard AWS environment variables, overridden by explicit options), and the limits of
//! this crate's requests. Building a [`BucketConfig`] contacts nothing; [`BucketConfig::build`]
//! makes the S3 client and checks the options, still without a request.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use object_store::aws::{AmazonS3Builder, Checksum, S3ConditionalPut, S3CopyIfNotExists};
use object_store::{BackoffConfig, ClientOptions, ObjectStore, RetryConfig};

use crate::error::{Error, Result};
use crate::layout::Layout;

/// Environment variables that name an endpoint, in the order the AWS tools prefer them.
const ENDPOINT_VARS: [&str; 3] = ["AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL", "AWS_ENDPOINT"];

/// Where the packs live and how to talk to that place.
///
/// Credentials, region and endpoint come from the standard AWS environment variables
/// (`AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, `AWS_SESSION_TOKEN`, `AWS_REGION` or
/// `AWS_DEFAULT_REGION`, `AWS_ENDPOINT_URL`, web identity and container credentials, and the
/// instance metadata service), unless a field here sets them.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct BucketConfig {
    /// `s3://BUCKET/PREFIX` (the prefix may be empty; every object lives under it).
    pub url: String,
    /// A custom endpoint (MinIO, Ceph, R2, a test server): `https://host:port`. Requests use
    /// path-style addressing (`endpoint/bucket/key`), which every S3-compatible server accepts.
    pub endpoint: Option<String>,
    /// The region; `us-east-1` when neither this nor the environment names one.
    pub region: Option<String>,
    /// Allow a plain `http://` endpoint. Only a loopback endpoint (`127.0.0.0/8`, `::1`,
    /// `localhost`) is accepted: anywhere else the bytes and the signed requests would cross a
    /// network in the clear; put TLS in front of the server instead.
    pub allow_http: bool,
    /// An access key id and secret, overriding the environment's.
    pub credentials: Option<(String, String)>,
    /// The longest a single request may take, body included (a 16 MiB part at 1 MB/s takes 16 s).
    pub request_timeout: Duration,
    /// The longest a connection may take to open.
    pub connect_timeout: Duration,
    /// Ask the server to verify a SHA-256 of every upload's body (`x-amz-checksum-sha256`), so
    /// bytes damaged in transit are refused rather than stored. The BLAKE3 in each pack's
    /// trailer is checked on download either way.
    pub verify_uploads: bool,
    /// Sizes, concurrency and queue bounds.
    pub limits: Limits,
}

/// Bounds on what this crate holds and sends at once.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct Limits {
    /// Packs at least this long (trailer included) go up as multipart uploads; smaller ones as
    /// one PUT, which holds the pack in memory while it is sent.
    pub multipart_threshold: u64,
    /// Part size of multipart uploads (S3 requires at least 5 MiB for all but the last).
    pub part_size: usize,
    /// Parts of one pack in flight at once. Memory held by an upload is about
    /// `(part_concurrency + 1) × part_size`.
    pub part_concurrency: usize,
    /// Ranged GETs of one `read_ranges` call in flight at once.
    pub read_concurrency: usize,
    /// Packs the shipper's queue holds before `ship` refuses more (each entry is a path and a
    /// length, not the bytes).
    pub max_queued_packs: usize,
    /// The longest pause between two shipping attempts while the bucket fails (the pause
    /// starts at 100 ms and doubles).
    pub max_retry_backoff: Duration,
    /// Worker threads of the crate's runtime (it has no other threads but a bounded pool of
    /// blocking file readers of the same size).
    pub runtime_threads: usize,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            multipart_threshold: 64 << 20,
            part_size: 16 << 20,
            part_concurrency: 4,
            read_concurrency: 8,
            max_queued_packs: 1024,
            max_retry_backoff: Duration::from_secs(10),
            runtime_threads: 2,
        }
    }
}

impl BucketConfig {
    /// A configuration for `url` (`s3://BUCKET/PREFIX`) with the defaults.
    pub fn new(url: impl Into<String>) -> BucketConfig {
        BucketConfig {
            url: url.into(),
            endpoint: None,
            region: None,
            allow_http: false,
            credentials: None,
            request_timeout: Duration::from_secs(60),
            connect_timeout: Duration::from_secs(5),
            verify_uploads: true,
            limits: Limits::default(),
        }
    }

    /// The bucket name and the prefix of [`BucketConfig::url`].
    pub fn bucket_and_prefix(&self) -> Result<(String, String)> {
        let bad = |why: &str| Error::Config {
            detail: format!("{:?} is not an s3://BUCKET/PREFIX URL: {why}", self.url),
        };
        let rest = self
            .url
            .strip_prefix("s3://")
            .ok_or_else(|| bad("it must start with s3://"))?;
        let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
        // S3's bucket naming rules, enough to refuse a typo before any request.
        let valid_bucket = (3..=63).contains(&bucket.len())
            && bucket
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.')
            && bucket.as_bytes()[0].is_ascii_alphanumeric()
            && bucket.as_bytes()[bucket.len() - 1].is_ascii_alphanumeric();
        if !valid_bucket {
            return Err(bad(
                "the bucket name must be 3-63 lowercase letters, digits, '-' or '.'",
            ));
        }
        Ok((bucket.to_owned(), prefix.trim_matches('/').to_owned()))
    }

    pub(crate) fn layout(&self) -> Result<Layout> {
        let (bucket, prefix) = self.bucket_and_prefix()?;
        Layout::new(&bucket, &prefix)
    }

    /// The endpoint requests will go to, if not AWS's own: the option, else the environment.
    fn effective_endpoint(&self) -> Option<String> {
        self.endpoint.clone().or_else(|| {
            ENDPOINT_VARS
                .iter()
                .find_map(|v| std::env::var(v).ok().filter(|s| !s.is_empty()))
        })
    }

    fn check_endpoint(&self) -> Result<()> {
        let Some(endpoint) = self.effective_endpoint() else {
            return Ok(());
        };
        let lower = endpoint.to_ascii_lowercase();
        if let Some(rest) = lower.strip_prefix("http://") {
            if !self.allow_http {
                return Err(Error::Config {
                    detail: format!(
                        "endpoint {endpoint} is plain HTTP; use https://, or allow plain HTTP \
                         (accepted for a loopback endpoint only)"
                    ),
                });
            }
            let host = host_of(rest);
            if !is_loopback(host) {
                return Err(Error::Config {
                    detail: format!(
                        "plain HTTP is allowed to a loopback endpoint only, not {host:?}: the \
                         packs and the signed requests would cross the network in the clear"
                    ),
                });
            }
        } else if !lower.starts_with("https://") {
            return Err(Error::Config {
                detail: format!(
                    "endpoint {endpoint} must start with https:// (or http:// on loopback)"
                ),
            });
        }
        Ok(())
    }

    /// Builds the S3 client. Contacts nothing: a wrong credential shows on the first request.
    ///
    /// The client is set up for this crate's protocol: conditional PUT (`If-None-Match: *`,
    /// `If-Match`) for slots and the lease, create-if-absent copies completed with
    /// `If-None-Match` for multipart packs, and few internal retries, because the shipper
    /// retries on its own, re-checking its lease before every attempt.
    pub fn build(&self) -> Result<Arc<dyn ObjectStore>> {
        let (bucket, _) = self.bucket_and_prefix()?;
        self.check_endpoint()?;
        let client = ClientOptions::new()
            .with_timeout(self.request_timeout)
            .with_connect_timeout(self.connect_timeout)
            .with_allow_http(self.allow_http);
        let mut builder = AmazonS3Builder::from_env()
            .with_bucket_name(bucket)
            .with_client_options(client)
            .with_conditional_put(S3ConditionalPut::ETagMatch)
            .with_copy_if_not_exists(S3CopyIfNotExists::Multipart)
            .with_virtual_hosted_style_request(false)
            .with_retry(RetryConfig {
                backoff: BackoffConfig::default(),
                max_retries: 3,
                retry_timeout: Duration::from_secs(30),
            });
        if let Some(endpoint) = &self.endpoint {
            builder = builder.with_endpoint(endpoint);
        }
        if let Some(region) = &self.region {
            builder = builder.with_region(region);
        }
        if let Some((id, secret)) = &self.credentials {
            builder = builder
                .with_access_key_id(id)
                .with_secret_access_key(secret);
        }
        if self.verify_uploads {
            builder = builder.with_checksum_algorithm(Checksum::SHA256);
        }
        let store = builder.build().map_err(|e| Error::Config {
            detail: format!("cannot build an S3 client for {}: {e}", self.url),
        })?;
        Ok(Arc::new(store))
    }
}

/// The host of `authority[/path]` (`host`, `host:port`, `[v6]:port`), lowercase already.
fn host_of(rest: &str) -> &str {
    let authority = rest.split('/').next().unwrap_or("");
    let authority = authority.rsplit('@').next().unwrap_or(authority);
    if let Some(v6) = authority.strip_prefix('[') {
        return v6.split(']').next().unwrap_or("");
    }
    authority.split(':').next().unwrap_or("")
}

fn is_loopback(host: &str) -> bool {
    host == "localhost" || host.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_split_into_bucket_and_prefix() {
        let parts = |u: &str| BucketConfig::new(u).bucket_and_prefix();
        assert_eq!(
            parts("s3://my-bucket").unwrap(),
            ("my-bucket".into(), "".into())
        );
        assert_eq!(
            parts("s3://my.bucket/a/b/").unwrap(),
            ("my.bucket".into(), "a/b".into())
        );
        for bad in [
            "my-bucket/x",
            "s3://",
            "s3://B",
            "s3://ab",
            "s3://-ab/x",
            "gs://abc/x",
        ] {
            let err = parts(bad).unwrap_err().to_string();
            assert!(err.contains("s3://BUCKET/PREFIX"), "{bad}: {err}");
        }
    }

    #[test]
    fn plain_http_only_on_loopback_and_only_when_allowed() {
        let with = |endpoint: &str, allow: bool| {
            let mut c = BucketConfig::new("s3://abc/p");
            c.endpoint = Some(endpoint.into());
            c.allow_http = allow;
            c.check_endpoint()
        };
        for ok in [
            "http://127.0.0.1:9000",
            "http://localhost:9/x",
            "http://[::1]:80",
            "http://127.3.2.1",
        ] {
            assert!(with(ok, true).is_ok(), "{ok}");
            let err = with(ok, false).unwrap_err().to_string();
            assert!(err.contains("plain HTTP"), "{err}");
        }
        for remote in [
            "http://10.0.0.1:9000",
            "http://minio.internal",
            "http://user@example.com:80",
        ] {
            let err = with(remote, true).unwrap_err().to_string();
            assert!(err.contains("loopback endpoint only"), "{remote}: {err}");
        }
        assert!(with("https://minio.internal:9000", false).is_ok());
        assert!(with("ftp://x", true).is_err());
    }

    #[test]
    fn a_config_builds_a_client_without_contacting_anything() {
        let mut c = BucketConfig::new("s3://abc/prefix");
        c.endpoint = Some("http://127.0.0.1:1".into());
        c.allow_http = true;
        c.region = Some("eu-west-1".into());
        c.credentials = Some(("id".into(), "secret".into()));
        let store = c.build().unwrap();
        assert!(store.to_string().contains("abc"), "{store}");
    }
}
