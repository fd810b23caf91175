#!/usr/bin/env python3
"""Compares the findings of claude-bottle, ripsecrets and detect-secrets on
the seeded corpus with the planted secrets (EXPECTED.tsv): found, missed by
kind, and findings on lines where nothing was planted."""
import collections, json, os, sys

out = sys.argv[1]
seeded = os.path.join(out, "seeded")
expected = [l.split("\t") for l in open(os.path.join(out, "EXPECTED.tsv")).read().splitlines() if l]
planted = collections.defaultdict(list)
for rel, line, kind in expected:
    planted[rel].append((int(line), kind))

def near(rel, line):
    # A private key spans lines; its planted line is the BEGIN line.
    return any(abs(line - l) <= 10 for l, _ in planted.get(rel, []))

def rel_of(path):
    path = os.path.normpath(path)
    return os.path.relpath(path, seeded) if os.path.isabs(path) else path

tools = {}
hits = collections.defaultdict(set)
for line in open(os.path.join(out, "cb.txt")):
    path, ln, _ = line.split(":", 2)
    hits["claude-bottle"].add((rel_of(path), int(ln)))
for line in open(os.path.join(out, "rs.txt")):
    parts = line.split(":", 2)
    if len(parts) == 3 and parts[1].isdigit():
        hits["ripsecrets"].add((rel_of(parts[0]), int(parts[1])))
ds = json.load(open(os.path.join(out, "ds.json")))
for path, items in ds["results"].items():
    for it in items:
        hits["detect-secrets"].add((rel_of(path), it["line_number"]))

print("%-15s %6s %6s %10s  missed kinds" % ("tool", "lines", "found", "unplanted"))
for tool in ["claude-bottle", "ripsecrets", "detect-secrets"]:
    h = hits[tool]
    found = [(rel, line, kind) for rel, line, kind in expected
             if any(r == rel and abs(l - int(line)) <= 10 for r, l in h)]
    missed = collections.Counter(kind for rel, line, kind in expected
                                 if (rel, line, kind) not in set(found))
    unplanted = [x for x in h if not near(*x)]
    print("%-15s %6d %6d %10d  %s" % (tool, len(h), len(found), len(unplanted),
                                       ", ".join("%s:%d" % kv for kv in sorted(missed.items()))))
