//! The AWS provider: EKS and RDS step types and data sources through `aws-sdk-eks` and
//! `aws-sdk-rds`. Clients honour the standard AWS environment (`AWS_ENDPOINT_URL`,
//! credentials, `AWS_REGION`) plus the provider block's `region` and `endpoint_url`.

mod eks;
mod profile;
mod rds;
mod rds_instance;
mod rds_ops;
mod rds_restore;
pub mod waiter;

use std::sync::Arc;
use std::time::Duration;

use aws_config::retry::RetryConfig;
use aws_config::timeout::TimeoutConfig;
use aws_config::BehaviorVersion;
use serde_json::Value as Json;

use async_trait::async_trait;

use super::{
    ArgSpec, ArgType, Client, DataSourceType, Provider, ProviderArgs, ProviderError, StepType,
};

/// The AWS step types.
pub fn step_types() -> Vec<Arc<dyn StepType>> {
    vec![
        Arc::new(eks::NodegroupScaling),
        Arc::new(rds::Snapshot),
        Arc::new(eks::ClusterVersion),
        Arc::new(eks::NodegroupVersion),
        Arc::new(rds_instance::Instance),
        Arc::new(rds_restore::POINT_IN_TIME),
        Arc::new(rds_restore::SNAPSHOT),
        Arc::new(rds_restore::REPLICA),
        Arc::new(rds_ops::Reboot),
        Arc::new(rds_ops::SnapshotExport),
    ]
}

/// The AWS data sources.
pub fn data_sources() -> Vec<Arc<dyn DataSourceType>> {
    vec![
        Arc::new(eks::NodegroupData),
        Arc::new(rds::DbInstanceData),
        Arc::new(eks::ClusterData),
        Arc::new(eks::NodegroupsData),
        Arc::new(rds_ops::SnapshotsData),
    ]
}

/// Clients for one AWS region and endpoint.
#[derive(Debug)]
pub struct AwsClients {
    /// The region, e.g. `us-west-2`.
    pub region: String,
    /// EKS client.
    pub eks: aws_sdk_eks::Client,
    /// RDS client.
    pub rds: aws_sdk_rds::Client,
}

/// The region a provider block resolves to: its `region`, else `AWS_REGION`,
/// `AWS_DEFAULT_REGION`, the `region` of its profile in the shared config file, else
/// `us-east-1` (the AWS CLI's order).
pub fn region_of(args: &serde_json::Map<String, Json>) -> String {
    args.get("region")
        .and_then(Json::as_str)
        .map(str::to_string)
        .or_else(|| std::env::var("AWS_REGION").ok().filter(|s| !s.is_empty()))
        .or_else(|| {
            std::env::var("AWS_DEFAULT_REGION")
                .ok()
                .filter(|s| !s.is_empty())
        })
        .or_else(|| profile::profile_region(args))
        .unwrap_or_else(|| "us-east-1".to_string())
}

/// Arguments the `provider "aws"` block accepts.
pub const PROVIDER_ARGS: &[ArgSpec] = &[
    ArgSpec {
        name: "region",
        ty: ArgType::String,
        required: false,
        doc: "AWS region (default: `AWS_REGION`, `AWS_DEFAULT_REGION`, the profile's `region`, else `us-east-1`)",
    },
    ArgSpec {
        name: "endpoint_url",
        ty: ArgType::String,
        required: false,
        doc: "endpoint of every service, e.g. a local moto server",
    },
    ArgSpec {
        name: "profile",
        ty: ArgType::String,
        required: false,
        doc: "named profile of the shared AWS config and credentials files",
    },
    ArgSpec {
        name: "max_attempts",
        ty: ArgType::Count,
        required: false,
        doc: "attempts per API call, retries included (1-10, default 3)",
    },
];

/// The `aws` provider: [`AwsClients`] per provider key.
pub struct Aws;

#[async_trait]
impl Provider for Aws {
    fn name(&self) -> &'static str {
        "aws"
    }
    fn args(&self) -> &'static [ArgSpec] {
        PROVIDER_ARGS
    }
    async fn connect(&self, args: &ProviderArgs) -> Result<Client, ProviderError> {
        Ok(Arc::new(connect(args).await))
    }
    fn step_types(&self) -> Vec<Arc<dyn StepType>> {
        step_types()
    }
    fn data_sources(&self) -> Vec<Arc<dyn DataSourceType>> {
        data_sources()
    }
}

/// Builds clients from a provider block's evaluated arguments.
pub async fn connect(args: &serde_json::Map<String, Json>) -> AwsClients {
    let region = region_of(args);
    let attempts = args
        .get("max_attempts")
        .and_then(Json::as_u64)
        .unwrap_or(3)
        .clamp(1, 10) as u32;
    let mut loader = aws_config::defaults(BehaviorVersion::latest())
        .region(aws_config::Region::new(region.clone()))
        .retry_config(RetryConfig::standard().with_max_attempts(attempts))
        .timeout_config(
            TimeoutConfig::builder()
                .connect_timeout(Duration::from_secs(5))
                .operation_attempt_timeout(Duration::from_secs(60))
                .build(),
        );
    if let Some(url) = args.get("endpoint_url").and_then(Json::as_str) {
        loader = loader.endpoint_url(url);
    }
    if let Some(profile) = args.get("profile").and_then(Json::as_str) {
        loader = loader.profile_name(profile);
    }
    let sdk = loader.load().await;
    AwsClients {
        region,
        eks: aws_sdk_eks::Client::new(&sdk),
        rds: aws_sdk_rds::Client::new(&sdk),
    }
}

/// Renders an SDK error with its whole chain (the server's code and message included). An
/// answer the SDK could not parse (an "unhandled error", e.g. an `AccessDenied` or
/// `InvalidClientTokenId` in a shape the service model does not describe) is rendered as the
/// code and message found in its body.
pub fn sdk_error<E: std::error::Error>(operation: &str, err: E) -> ProviderError {
    let text = aws_smithy_types::error::display::DisplayErrorContext(&err).to_string();
    if let Some((code, message)) = unparsed_error(&text) {
        return ProviderError::new(format!("{operation} failed: {code}: {message}"));
    }
    ProviderError::new(format!("{operation} failed: {text}"))
}

/// The `<Code>` and `<Message>` of an error body the SDK left unparsed, from its rendering.
fn unparsed_error(text: &str) -> Option<(String, String)> {
    if !text.contains("unhandled error") {
        return None;
    }
    let between = |open: &str, close: &str| {
        let start = text.find(open)? + open.len();
        let len = text[start..].find(close)?;
        Some(text[start..start + len].to_string())
    };
    Some((
        between("<Code>", "</Code>")?,
        between("<Message>", "</Message>")?,
    ))
}

#[cfg(test)]
mod tests {
    use crate::config::{load_sources, SourceFile};

    #[test]
    fn a_provider_block_with_an_unknown_argument_is_an_error_at_its_position() {
        let config = load_sources(vec![SourceFile::new(
            "main.hcl",
            "provider \"aws\" {\n  region = \"eu-west-1\"\n  regoin = \"x\"\n}\n",
        )])
        .unwrap();
        let text = crate::graph::build(&config, &crate::provider::Registry::standard())
            .unwrap_err()
            .to_string();
        assert!(
            text.contains("unknown argument `regoin` for provider `aws`; expected one of: region, endpoint_url, profile, max_attempts"),
            "{text}"
        );
        assert!(text.contains("--> main.hcl:3:3"), "{text}");
    }
}
