//! Secrets the pipeline reads at run time (Prometheus credentials, Slack webhooks): from AWS
//! Secrets Manager, or from SSM Parameter Store with an `ssm:` prefix. Never from a config file;
//! never logged.

use crate::store::AwsSettings;
use crate::{Error, Result};

/// A secret's text: `ssm:/path/name` is a Parameter Store SecureString, anything else a Secrets
/// Manager secret id or ARN (its `SecretString`). `setting` names where the reference came from,
/// for the error.
pub async fn read_secret(aws: &AwsSettings, reference: &str, setting: &str) -> Result<String> {
    let config = aws.sdk_config().await;
    let failed = |message: String| Error::Secret { setting: setting.to_string(), reference: reference.to_string(), message };
    if let Some(name) = reference.strip_prefix("ssm:") {
        let ssm = aws_sdk_ssm::Client::new(&config);
        let answer = ssm.get_parameter().name(name).with_decryption(true).send().await.map_err(|e| failed(aws_sdk_ssm::error::DisplayErrorContext(&e).to_string()))?;
        return answer.parameter().and_then(|p| p.value()).map(str::to_string).ok_or_else(|| failed("the parameter has no value".into()));
    }
    let manager = aws_sdk_secretsmanager::Client::new(&config);
    let answer = manager.get_secret_value().secret_id(reference).send().await.map_err(|e| failed(aws_sdk_secretsmanager::error::DisplayErrorContext(&e).to_string()))?;
    answer.secret_string().map(str::to_string).ok_or_else(|| failed("the secret has no SecretString (a binary secret cannot hold a token)".into()))
}
