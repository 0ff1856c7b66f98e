"""What deploy/check.sh's manifest checks share: reading a folder of Kubernetes manifests."""
import glob
import sys

import yaml


def need(doc, path, where):
    """The value at dotted `path` in `doc`; exits naming `where` when it is missing."""
    value = doc
    for key in path.split("."):
        if not isinstance(value, dict) or key not in value:
            sys.exit(f"{where}: missing {path}")
        value = value[key]
    return value


def load_kinds(folder):
    """Every manifest in `folder`, by kind: lists of (where, document)."""
    kinds = {}
    for name in sorted(glob.glob(f"{folder}/*.yaml")):
        for doc in yaml.safe_load_all(open(name)):
            where = f"{name} ({doc.get('kind')} {doc.get('metadata', {}).get('name')})"
            fields = ("apiVersion", "kind") if doc.get("kind") == "Kustomization" else ("apiVersion", "kind", "metadata.name")
            for field in fields:
                need(doc, field, where)
            kinds.setdefault(doc["kind"], []).append((where, doc))
    return kinds
