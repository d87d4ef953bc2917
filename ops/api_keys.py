"""API keys and webhook signing secrets: `make api-key NAME=alice` (the key's signing secret, then
the new key as the last line: shown once, stored as its hash), `make api-key-rotate-secret
NAME=alice` (a new signing secret; the old one keeps signing for --grace-hours),
`make api-key-revoke NAME=alice`, `make api-keys` (never the keys nor the secrets),
`make webhook-secret` (the deployment's own secret, for jobs made without a key). STACK=<stack>
targets a deployed stack; without it, the emulation of `make dev` on EMULATOR_PORT.

    python -m ops.api_keys create alice [--max-active-jobs N] [--max-submits-per-minute N]
    python -m ops.api_keys rotate-secret alice [--grace-hours 24]
    python -m ops.api_keys revoke alice [--key-id ID]
    python -m ops.api_keys list
    python -m ops.api_keys deployment-secret [--rotate] [--grace-hours 24]
"""

from __future__ import annotations

import argparse
import json
import os
import sys

from shared.signing import GRACE_HOURS


def table_name(stack: str | None) -> str:
    if stack:
        import boto3

        [description] = boto3.client("cloudformation").describe_stacks(StackName=stack)["Stacks"]
        return {o["OutputKey"]: o["OutputValue"] for o in description.get("Outputs", [])}["JobsTableName"]
    from ops.redrive import emulation_resources

    return emulation_resources(os.environ.get("EMULATOR_PORT", "4566"))["JOBS_TABLE_NAME"]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="make api-key", description=__doc__.split("\n\n")[0])
    parser.add_argument("--stack", help="a deployed stack (default: the emulation on EMULATOR_PORT)")
    commands = parser.add_subparsers(dest="command", required=True)
    create = commands.add_parser("create")
    create.add_argument("name")
    create.add_argument("--max-active-jobs", type=int)
    create.add_argument("--max-submits-per-minute", type=int)
    rotate = commands.add_parser("rotate-secret")
    rotate.add_argument("name")
    rotate.add_argument("--grace-hours", type=float, default=GRACE_HOURS, help="the old secret keeps signing this long")
    revoke = commands.add_parser("revoke")
    revoke.add_argument("name")
    revoke.add_argument("--key-id", help="only this key of the name (`list` shows the ids)")
    commands.add_parser("list")
    deployment = commands.add_parser("deployment-secret", help="the secret of jobs made without a key")
    deployment.add_argument("--rotate", action="store_true")
    deployment.add_argument("--grace-hours", type=float, default=GRACE_HOURS)
    args = parser.parse_args(argv)
    os.environ["JOBS_TABLE_NAME"] = table_name(args.stack)
    os.environ.setdefault("POWERTOOLS_METRICS_NAMESPACE", "MediaGeneration")
    from shared import auth, signing

    if args.command == "create":
        new = auth.create_key(args.name, args.max_active_jobs, args.max_submits_per_minute)
        print(f"API key for {args.name} (key id {new.key_id}), shown once: store it and its webhook signing secret now")
        print(f"Webhook signing secret: {new.signing_secret}")
        print(new.key)
    elif args.command == "rotate-secret":
        rotated = auth.rotate_signing_secrets(args.name, args.grace_hours)
        for key_id, secret in rotated.items():
            grace = f"the old one signs too for {args.grace_hours:g} h"
            print(f"New webhook signing secret of {args.name}'s key {key_id} ({grace}):")
            print(secret)
        return 0 if rotated else 1
    elif args.command == "deployment-secret":
        secret = signing.stored_deployment()[0].get_secret_value()
        if not args.stack:
            print("(the emulation's stored one: `make dev` signs with its CLIENT_WEBHOOK_SECRET)", file=sys.stderr)
        if args.rotate:
            secret = signing.rotate(signing.DEPLOYMENT, args.grace_hours)
            print(f"New deployment webhook signing secret (the old one signs too for {args.grace_hours:g} h):")
        print(secret)
    elif args.command == "revoke":
        revoked = auth.revoke_keys(args.name, args.key_id)
        print(json.dumps({"name": args.name, "key_id": args.key_id, "revoked": revoked}))
        return 0 if revoked else 1
    else:
        for entry in auth.list_keys():
            print(json.dumps(entry))
    return 0


if __name__ == "__main__":
    sys.exit(main())
