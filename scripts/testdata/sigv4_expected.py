"""The SigV4 Authorization header botocore computes for a request, as an independent check of
the one finops sends to Amazon Managed Service for Prometheus.

Reads JSON on stdin: {"method", "url", "headers": {name: value}, "region", "service",
"access_key", "secret_key", "token"}; `headers` holds the signed headers as sent (host,
x-amz-date, x-amz-security-token). Prints the Authorization header botocore would send.
"""
import json
import sys

from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

spec = json.load(sys.stdin)
request = AWSRequest(method=spec["method"], url=spec["url"], headers=spec["headers"], data=b"")
# Sign at the time the request was signed, not now: the lower-level steps read the context's
# timestamp, which add_auth would overwrite with the clock.
request.context["timestamp"] = spec["headers"]["x-amz-date"]
auth = SigV4Auth(Credentials(spec["access_key"], spec["secret_key"], spec.get("token")), spec["service"], spec["region"])
canonical = auth.canonical_request(request)
string_to_sign = auth.string_to_sign(request, canonical)
signature = auth.signature(string_to_sign, request)
signed = auth.signed_headers(auth.headers_to_sign(request))
scope = auth.scope(request)
print(f"AWS4-HMAC-SHA256 Credential={scope}, SignedHeaders={signed}, Signature={signature}")
