#!/usr/bin/env python3
"""Lists relstore's public API and fails when it exposes a backend crate.

Builds the library's rustdoc JSON with the nightly toolchain (rustup installs it when missing),
writes every public item path to target/public-api.txt, and exits non-zero when an item of
sled, bincode or memmap2 appears anywhere in the public API: a signature, a field, a trait
implementation of a public type. Those crates are implementation details the API promises to
hide (docs/architecture.md). Usage: python3 scripts/public-api.py
"""
import json
import os
import subprocess
import sys

FORBIDDEN = {"sled", "bincode", "memmap2"}
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TARGET = os.path.join(ROOT, "target", "public-api")


def rustdoc_json():
    toolchains = subprocess.run(["rustup", "toolchain", "list"], capture_output=True, text=True)
    if "nightly" not in toolchains.stdout:
        subprocess.run(["rustup", "toolchain", "install", "nightly", "--profile", "minimal"], check=True)
    subprocess.run(
        ["cargo", "+nightly", "rustdoc", "-q", "-p", "relstore", "--lib", "--target-dir", TARGET,
         "--", "-Z", "unstable-options", "--output-format", "json"],
        cwd=ROOT, check=True)
    with open(os.path.join(TARGET, "doc", "relstore.json")) as f:
        return json.load(f)


def ids_in(value, out):
    """Every item id referenced inside a JSON value (ids are the values of "id" keys)."""
    if isinstance(value, dict):
        for k, v in value.items():
            if k == "id" and isinstance(v, (int, str)):
                out.add(str(v))
            else:
                ids_in(v, out)
    elif isinstance(value, list):
        for v in value:
            ids_in(v, out)


def main():
    doc = rustdoc_json()
    index = {str(k): v for k, v in doc["index"].items()}
    paths = {str(k): v for k, v in doc["paths"].items()}
    crates = {str(k): v["name"] for k, v in doc["external_crates"].items()}

    def crate_of(item_id):
        p = paths.get(item_id)
        return "relstore" if p is None or p["crate_id"] == 0 else crates.get(str(p["crate_id"]), "?")

    # Every public item: walk the root module, following re-exports into their items.
    listing, leaks, seen = set(), set(), set()

    def scan(where, inner):
        refs = set()
        ids_in(inner, refs)
        for r in refs:
            if crate_of(r) in FORBIDDEN:
                leaks.add((where, crate_of(r) + "::" + "::".join(paths[r]["path"][1:])))

    def type_name(t):
        if isinstance(t, dict) and "resolved_path" in t:
            return t["resolved_path"].get("path") or t["resolved_path"].get("name", "?")
        return "?"

    def walk(item_id, path):
        if item_id in seen or item_id not in index:
            return
        seen.add(item_id)
        item = index[item_id]
        (kind, inner), = item["inner"].items()
        name = item.get("name")
        here = path + [name] if name else path
        if kind == "module":
            if path:  # a public module besides the crate root
                listing.add(("module", "::".join(here)))
            for child in inner["items"]:
                walk(str(child), here)
        elif kind == "use":
            if inner.get("id") is not None:
                target = str(inner["id"])
                if target not in index:
                    listing.add(("re-export", "::".join(path + [inner["name"]])))
                    if crate_of(target) in FORBIDDEN:
                        leaks.add(("::".join(path + [inner["name"]]), inner["source"]))
                walk(target, path)
        elif kind == "impl":
            if inner.get("is_synthetic") or inner.get("blanket_impl") is not None:
                return
            if inner.get("trait"):
                trait = inner["trait"].get("path") or inner["trait"].get("name", "?")
                where = f"impl {trait} for {'::'.join(path)}"
                listing.add(("impl", where))
                scan(where, inner)
            else:
                for m in inner["items"]:
                    walk(str(m), path)
        else:
            listing.add((kind, "::".join(here)))
            children = []
            for key in ("fields", "variants", "items", "impls"):
                for source in (inner, inner.get("kind", {}).get("plain", {}) if isinstance(inner.get("kind"), dict) else {}):
                    v = source.get(key)
                    if isinstance(v, list):
                        children.extend(str(c) for c in v)
            scan("::".join(here), {k: v for k, v in inner.items() if k not in ("impls", "items", "variants")})
            for c in children:
                walk(c, here)

    walk(str(doc["root"]), [])
    listing = sorted(listing, key=lambda k: (k[1], k[0]))
    out = os.path.join(ROOT, "target", "public-api.txt")
    with open(out, "w") as f:
        for kind, path in listing:
            f.write(f"{kind:<12} {path}\n")
    top = [p for k, p in listing if k != "impl" and p.count("::") == 1]
    print(f"public API: {len(listing)} items, {len(top)} of them at the root, the rest their "
          f"members and trait impls (listing in {out})")
    modules = [p for k, p in listing if k == "module"]
    if modules:
        print("public modules (the API is the root's re-exports only):", ", ".join(modules))
    for where, what in sorted(leaks):
        print(f"backend crate in the public API: {where} uses {what}")
    if leaks or modules:
        sys.exit(1)


if __name__ == "__main__":
    main()
