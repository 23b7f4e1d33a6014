#!/usr/bin/env python3
"""A credit-node client in Python: the `.proto` files are the whole contract.

It compiles `proto/credit/v1/*.proto` with grpcio-tools at start (no generated code to keep in
step), connects over mutual TLS with a department's certificate (the node takes the caller's
identity from it, never from a request field), and asks:

    whoami   the identity the node established from the certificate
    query    one subject; with --ledger-key, also checks the receipt: that its
             `result_sha256` is the digest of the result received, that the node's tree head
             is signed by the pinned key (Ed25519), and that the receipt's leaf is in that
             tree (RFC 9162 inclusion proof), all computed here, independently of the node's
             own code. (The entry's bytes are the node's officers' to read: that the leaf
             records this digest is theirs to check, with `credit-node ledger verify`.)
    withdrawals  every record the node withdrew since --since-ms that we may have received
             (restored, or removed from a list): stop using them. All pages; with --node,
             those of that node of another region, asked through this one

Output is one JSON object on stdout. Exit codes: 0 answered (and proved), 1 the node refused
(`{"error": {"code": ..., "message": ...}}`), 2 a proof failed, 3 bad usage or files.

    pip install grpcio grpcio-tools cryptography
    python3 clients/python/credit_client.py --endpoint 127.0.0.1:7443 \
        --ca certs/dev/region-a.credit.test/ca.crt \
        --cert certs/dev/region-a.credit.test/dept-tax.crt \
        --key certs/dev/region-a.credit.test/dept-tax.key \
        query --subject 91330106MA2B00001W --item registration \
        --purpose tax-administration --basis "（2026）浙0106执123号" \
        --ledger-key certs/dev/region-a.credit.test/ledger.pub
"""

import argparse
import hashlib
import importlib
import json
import pathlib
import sys
import tempfile

import grpc
from google.protobuf import json_format

PROTO_ROOT = pathlib.Path(__file__).resolve().parents[2] / "proto"


def compile_protos(proto_root, out_dir):
    """Generates the Python modules of every credit.v1 proto file into `out_dir`."""
    from grpc_tools import protoc

    # grpcio-tools ships the well-known types; the credit protos import none, but keep the
    # include path complete for when they do.
    well_known = pathlib.Path(importlib.import_module("grpc_tools").__file__).parent / "_proto"
    files = sorted(str(p) for p in (proto_root / "credit" / "v1").glob("*.proto"))
    args = [
        "protoc",
        f"-I{proto_root}",
        f"-I{well_known}",
        f"--python_out={out_dir}",
        f"--grpc_python_out={out_dir}",
        *files,
    ]
    if protoc.main(args) != 0:
        raise SystemExit(usage_error(f"protoc failed on the proto files under {proto_root}"))
    sys.path.insert(0, str(out_dir))


def channel(args):
    roots = b"".join(read(path) for path in args.ca)
    credentials = grpc.ssl_channel_credentials(
        root_certificates=roots,
        private_key=read(args.key),
        certificate_chain=read(args.cert),
    )
    options = []
    if args.server_name:
        options.append(("grpc.ssl_target_name_override", args.server_name))
    return grpc.secure_channel(args.endpoint, credentials, options=options)


def read(path):
    try:
        return pathlib.Path(path).read_bytes()
    except OSError as e:
        raise SystemExit(usage_error(f"{path}: {e.strerror}"))


def usage_error(message):
    print(json.dumps({"error": {"code": "USAGE", "message": message}}))
    return 3


def as_json(message):
    return json_format.MessageToDict(message, preserving_proto_field_name=True)


# --- proofs, from the proto comments alone --------------------------------------------------


def sha256(data):
    return hashlib.sha256(data).digest()


def node_hash(left, right):
    return sha256(b"\x01" + left + right)


def root_from_inclusion_proof(leaf_index, tree_size, leaf_hash, path):
    """RFC 9162 section 2.1.3.2: the root the audit path leads to, or None if it cannot."""
    if leaf_index >= tree_size:
        return None
    fn, sn, r = leaf_index, tree_size - 1, leaf_hash
    for p in path:
        if sn == 0:
            return None
        if fn & 1 or fn == sn:
            r = node_hash(p, r)
            if not fn & 1:
                while fn and not fn & 1:
                    fn >>= 1
                    sn >>= 1
        else:
            r = node_hash(r, p)
        fn >>= 1
        sn >>= 1
    return r if sn == 0 else None


def tree_head_message(head):
    """What the node signs (GetSignedTreeHeadResponse.signature)."""
    return (
        b"credit-node/sth/v1\x00"
        + head.tree_size.to_bytes(8, "big")
        + head.root_hash
        + head.timestamp_ms.to_bytes(8, "big", signed=True)
        + head.key_id
    )


def prove(pb, review_pb, review, response, pinned_key):
    """Checks `response`'s receipt: the digest, the signed tree head and the inclusion proof.
    Returns (what was checked, the first failure or None)."""
    from cryptography.exceptions import InvalidSignature
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ed25519

    receipt = response.receipt
    # The result alone; with `upstream`, the response without its receipt (QueryResponse).
    covered = response.result
    if response.HasField("upstream"):
        covered = pb.QueryResponse(result=response.result, upstream=response.upstream)
    if sha256(covered.SerializeToString(deterministic=True)) != receipt.result_sha256:
        return {}, "result_sha256 is not the digest of the result received"

    try:
        key = serialization.load_pem_public_key(pinned_key)
    except ValueError:
        return {}, "the pinned ledger key is not a PEM public key"
    if not isinstance(key, ed25519.Ed25519PublicKey):
        return {}, "the pinned ledger key is not an Ed25519 key"
    try:
        head = review.GetSignedTreeHead(review_pb.GetSignedTreeHeadRequest())
    except grpc.RpcError as e:
        return {}, f"no signed tree head: {e.code().name}: {e.details()}"
    raw = key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    if head.key_id != sha256(raw):
        return {}, "the tree head is signed by another key than the pinned one"
    try:
        key.verify(head.signature, tree_head_message(head))
    except InvalidSignature:
        return {}, "the tree head's signature does not verify with the pinned key"

    try:
        proof = review.GetInclusionProof(
            review_pb.GetInclusionProofRequest(seq=receipt.sequence, tree_size=head.tree_size)
        )
    except grpc.RpcError as e:
        return {}, f"no inclusion proof: {e.code().name}: {e.details()}"
    if proof.leaf_hash != receipt.leaf_hash:
        return {}, "the proof is for another leaf than the receipt's"
    root = root_from_inclusion_proof(
        receipt.sequence, head.tree_size, receipt.leaf_hash, list(proof.audit_path)
    )
    if root != head.root_hash:
        return {}, "the inclusion proof does not lead to the signed root"
    checked = {
        "sequence": receipt.sequence,
        "leaf_hash": receipt.leaf_hash.hex(),
        "tree_size": head.tree_size,
        "root_hash": head.root_hash.hex(),
        "audit_path_length": len(proof.audit_path),
    }
    return checked, None


# --- commands ---------------------------------------------------------------------------------


def list_withdrawals(pb, credit, args):
    """Every page of withdrawals since `args.since_ms`, and the ledger entries that recorded
    each page (each page is a query on record at the node)."""
    withdrawals, entries, token = [], [], ""
    while True:
        page = credit.ListWithdrawals(
            pb.ListWithdrawalsRequest(since_ms=args.since_ms, page_token=token, node=args.node)
        )
        withdrawals.extend(as_json(w) for w in page.withdrawals)
        entries.append(page.receipt.sequence)
        token = page.next_page_token
        if not token:
            return {"withdrawals": withdrawals, "listed_in_entries": entries}


class Parser(argparse.ArgumentParser):
    """Bad usage is exit 3 with a JSON error, as documented, not argparse's exit 2."""

    def error(self, message):
        raise SystemExit(usage_error(f"{self.prog}: {message}"))


def main(argv):
    parser = Parser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--endpoint", required=True, help="host:port of the node")
    parser.add_argument("--ca", action="append", required=True, help="trusted CA (PEM); repeat")
    parser.add_argument("--cert", required=True, help="this department's certificate (PEM)")
    parser.add_argument("--key", required=True, help="its private key (PEM)")
    parser.add_argument("--server-name", help="the name to expect in the node's certificate")
    parser.add_argument("--proto", default=str(PROTO_ROOT), help="the proto root directory")
    commands = parser.add_subparsers(dest="command", required=True, parser_class=Parser)
    commands.add_parser("whoami")
    query = commands.add_parser("query")
    query.add_argument("--subject", required=True)
    query.add_argument("--item", action="append", default=[], help="an item id; repeat")
    query.add_argument("--purpose", required=True)
    query.add_argument("--basis", required=True, help="the legal basis or case reference")
    query.add_argument("--node", default="", help="the node of another region holding it")
    query.add_argument("--ledger-key", help="the node's ledger.pub (PEM): prove the receipt")
    listing = commands.add_parser("withdrawals")
    listing.add_argument("--since-ms", type=int, default=0, help="Unix ms, inclusive")
    listing.add_argument("--node", default="", help="the node of another region to ask for")
    args = parser.parse_args(argv)

    with tempfile.TemporaryDirectory() as generated:
        compile_protos(pathlib.Path(args.proto), generated)
        pb = importlib.import_module("credit.v1.query_pb2")
        query_grpc = importlib.import_module("credit.v1.query_pb2_grpc")
        review_pb = importlib.import_module("credit.v1.ledger_review_pb2")
        review_grpc = importlib.import_module("credit.v1.ledger_review_pb2_grpc")
        pinned = read(args.ledger_key) if getattr(args, "ledger_key", None) else None

        with channel(args) as ch:
            credit = query_grpc.CreditQueryStub(ch)
            try:
                if args.command == "whoami":
                    print(json.dumps(as_json(credit.WhoAmI(pb.WhoAmIRequest()))))
                    return 0
                if args.command == "withdrawals":
                    print(json.dumps(list_withdrawals(pb, credit, args), ensure_ascii=False))
                    return 0
                request = pb.QueryRequest(
                    subject=args.subject,
                    items=[pb.ItemSelection(item=item) for item in args.item],
                    purpose=args.purpose,
                    basis_reference=args.basis,
                    node=args.node,
                )
                response = credit.Query(request)
                out = {"response": as_json(response)}
                if pinned is not None:
                    review = review_grpc.LedgerReviewStub(ch)
                    checked, failure = prove(pb, review_pb, review, response, pinned)
                    if failure:
                        out["proof"] = {"verified": False, "failure": failure}
                        print(json.dumps(out, ensure_ascii=False))
                        return 2
                    out["proof"] = {"verified": True, **checked}
                print(json.dumps(out, ensure_ascii=False))
                return 0
            except grpc.RpcError as e:
                error = {"code": e.code().name, "message": e.details()}
                print(json.dumps({"error": error}, ensure_ascii=False))
                return 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
