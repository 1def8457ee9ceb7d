#!/bin/sh
# Make the S3 secrets for docker-compose.yml in DIR: one identity allowed on the blob
# bucket only, as SeaweedFS's -s3.config JSON and as a boto3 credentials file.
set -eu
dir=${1:?usage: make-s3-secrets.sh DIR}
umask 077
mkdir -p "$dir"
key=$(od -An -tx1 -N16 /dev/urandom | tr -d ' \n')
secret=$(od -An -tx1 -N32 /dev/urandom | tr -d ' \n')
cat > "$dir/s3-config.json" <<JSON
{"identities": [{"name": "lucid",
  "credentials": [{"accessKey": "$key", "secretKey": "$secret"}],
  "actions": ["Read:lucid-blobs", "Write:lucid-blobs", "List:lucid-blobs", "Admin:lucid-blobs"]}]}
JSON
printf '[default]\naws_access_key_id = %s\naws_secret_access_key = %s\n' "$key" "$secret" > "$dir/s3-credentials"
echo "wrote $dir/s3-config.json and $dir/s3-credentials"
