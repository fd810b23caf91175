#!/usr/bin/env python3
"""Builds the DLP benchmark corpora from source text already on the machine
(Rust crates in the cargo registry, the Python standard library), so nothing
is downloaded and nothing is committed:

  clean/   about SIZE MiB of .rs/.py/.md/.toml/.json files, as they are
  compare/ the first COMPARE_MIB of clean/, for the slow scanners
  seeded/  a smaller copy with fake secrets of known kinds planted at random
           lines; seeded/EXPECTED.tsv lists file, line and kind of each

usage: make_corpus.py OUT_DIR [SIZE_MIB] [SEEDED_MIB] [COMPARE_MIB]"""
import base64, glob, hashlib, os, random, shutil, string, sys

out = sys.argv[1]
size = int(sys.argv[2]) if len(sys.argv) > 2 else 32
seeded_size = int(sys.argv[3]) if len(sys.argv) > 3 else 4
compare_size = int(sys.argv[4]) if len(sys.argv) > 4 else 8
rng = random.Random(20260501)
home = os.path.expanduser("~")
sources = sorted(glob.glob(home + "/.cargo/registry/src/*/*/**/*.rs", recursive=True))
sources += sorted(glob.glob(home + "/.pyenv/versions/3.12*/lib/python3.12/**/*.py", recursive=True))
sources += sorted(glob.glob(home + "/.cargo/registry/src/*/*/**/*.md", recursive=True))
sources += sorted(glob.glob(home + "/.cargo/registry/src/*/*/Cargo.toml"))
# Skip test fixtures of secret scanners and crypto crates: they hold key-shaped
# test vectors on purpose and are not "clean" text.
skip = ("test", "vector", "fixture", "rustls", "ring-", "aws-lc", "webpki", "x509", "rcgen", "pem")
sources = [s for s in sources if not any(k in s.lower() for k in skip)]
rng.shuffle(sources)

def fill(dest, budget):
    shutil.rmtree(dest, ignore_errors=True)
    os.makedirs(dest)
    total, files = 0, []
    for i, src in enumerate(sources):
        if total >= budget:
            break
        try:
            data = open(src, "rb").read()
        except OSError:
            continue
        if b"\0" in data[:8192] or len(data) > 2_000_000:
            continue
        sub = os.path.join(dest, "d%03d" % (i % 200))
        os.makedirs(sub, exist_ok=True)
        name = os.path.join(sub, "%05d_%s" % (i, os.path.basename(src)))
        with open(name, "wb") as f:
            f.write(data)
        total += len(data)
        files.append(name)
    return files, total

def rnd(alphabet, n):
    return "".join(rng.choice(alphabet) for _ in range(n))

AN = string.ascii_letters + string.digits
HEX = "0123456789abcdef"
B64 = AN + "+/"
URL = AN + "-_"

def secrets():
    """(kind, line) pairs; every kind is one a secret scanner should find."""
    pem_body = "\n".join(rnd(B64, 64) for _ in range(8))
    return [
        ("aws-access-key-id", "aws_access_key_id = AKIA" + rnd("ABCDEFGHIJKLMNOPQRSTUVWXYZ234567", 16)),
        ("aws-secret-access-key", "aws_secret_access_key = " + rnd(B64, 40)),
        ("github-pat", "GITHUB_TOKEN=ghp_" + rnd(AN, 36)),
        ("github-fine-grained-pat", "token: github_pat_" + rnd(AN, 22) + "_" + rnd(AN, 59)),
        ("gitlab-pat", "GITLAB_TOKEN=glpat-" + rnd(URL, 20)),
        ("slack-bot-token", "SLACK_TOKEN=xoxb-" + rnd(string.digits, 12) + "-" + rnd(string.digits, 13) + "-" + rnd(AN, 24)),
        ("slack-webhook-url", "url = 'https://hooks.slack.com/services/T" + rnd(string.ascii_uppercase, 8) + "/B" + rnd(string.ascii_uppercase, 8) + "/" + rnd(AN, 24) + "'"),
        ("stripe-secret-key", "stripe.api_key = 'sk_live_" + rnd(AN, 24) + "'"),
        ("anthropic-api-key", "ANTHROPIC_API_KEY=sk-ant-api03-" + rnd(URL, 93) + "AA"),
        ("openai-project-key", "OPENAI_API_KEY=sk-proj-" + rnd(URL, 100)),
        ("private-key", "-----BEGIN RSA PRIVATE KEY-----\n" + pem_body + "\n-----END RSA PRIVATE KEY-----"),
        ("jwt", "auth = 'eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9." + base64.urlsafe_b64encode(('{"sub":"%s"}' % rnd(AN, 12)).encode()).decode().rstrip("=") + "." + rnd(URL, 43) + "'"),
        ("generic-password", "db_password = \"" + rnd(AN, 18) + "\""),
        ("url-credentials", "DATABASE_URL=postgres://app:" + rnd(AN, 16) + "@db.internal:5432/app"),
        ("npm-token", "//registry.npmjs.org/:_authToken=npm_" + rnd(AN, 36)),
        ("sendgrid-api-key", "SENDGRID_API_KEY=SG." + rnd(URL, 22) + "." + rnd(URL, 43)),
        ("twilio-api-key", "TWILIO_KEY=SK" + rnd(HEX, 32)),
        ("huggingface-token", "HF_TOKEN=hf_" + rnd(string.ascii_letters, 34)),
        ("gcp-api-key", "key=AIza" + rnd(URL, 35)),
        ("base64-github-pat", "blob = \"" + base64.b64encode(("token=ghp_" + rnd(AN, 36)).encode()).decode() + "\""),
    ]

clean, total = fill(os.path.join(out, "clean"), size << 20)
print("clean: %d files, %.1f MiB" % (len(clean), total / 1048576))
cmp_dir = os.path.join(out, "compare")
shutil.rmtree(cmp_dir, ignore_errors=True)
ctotal = 0
for path in clean:
    if ctotal >= compare_size << 20:
        break
    dest = os.path.join(cmp_dir, os.path.relpath(path, os.path.join(out, "clean")))
    os.makedirs(os.path.dirname(dest), exist_ok=True)
    shutil.copyfile(path, dest)
    ctotal += os.path.getsize(path)
print("compare: %.1f MiB" % (ctotal / 1048576))
seeded, stotal = fill(os.path.join(out, "seeded"), seeded_size << 20)
expected = []
for n, path in enumerate(rng.sample(seeded, min(200, len(seeded)))):
    lines = open(path, "rb").read().split(b"\n")
    kind, text = secrets()[n % 20]
    at = rng.randrange(len(lines))
    lines.insert(at, text.encode())
    open(path, "wb").write(b"\n".join(lines))
    expected.append("%s\t%d\t%s" % (os.path.relpath(path, os.path.join(out, "seeded")), at + 1, kind))
with open(os.path.join(out, "EXPECTED.tsv"), "w") as f:
    f.write("\n".join(expected) + "\n")
print("seeded: %d files, %.1f MiB, %d secrets planted" % (len(seeded), stotal / 1048576, len(expected)))
