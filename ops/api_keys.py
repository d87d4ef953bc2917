"""API keys: `make api-key NAME=alice` (the new key is the last line: shown once, stored as its
hash), `make api-key-revoke NAME=alice`, `make api-keys` (never the keys). STACK=<stack> targets a
deployed stack; without it, the emulation of `make dev` on EMULATOR_PORT.

    python -m ops.api_keys create alice [--max-active-jobs N] [--max-submits-per-minute N]
    python -m ops.api_keys revoke alice
    python -m ops.api_keys list
"""

from __future__ import annotations

import argparse
import json
import os
import sys


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
    commands.add_parser("revoke").add_argument("name")
    commands.add_parser("list")
    args = parser.parse_args(argv)
    os.environ["JOBS_TABLE_NAME"] = table_name(args.stack)
    os.environ.setdefault("POWERTOOLS_METRICS_NAMESPACE", "MediaGeneration")
    from shared import auth

    if args.command == "create":
        key = auth.create_key(args.name, args.max_active_jobs, args.max_submits_per_minute)
        print(f"API key for {args.name} (shown once, store it now):")
        print(key)
    elif args.command == "revoke":
        revoked = auth.revoke_keys(args.name)
        print(json.dumps({"name": args.name, "revoked": revoked}))
        return 0 if revoked else 1
    else:
        for entry in auth.list_keys():
            print(json.dumps(entry))
    return 0


if __name__ == "__main__":
    sys.exit(main())
