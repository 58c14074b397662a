"""The shared blocklist every system gets, and the inputs the load generators send.

The list is built from the real lists in ../shared/data (the UT1 categories a
school blocks for pupils, the Block List Project, porntop), cleaned the same way
for every system (lower case, host names only, no IP literals, no name that a
parent domain in the list already covers: Squid warns about and e2guardian
double-counts such pairs), then cut or extended to the chosen size. The
extension is synthetic, deterministic and clearly marked (`sgx...` labels), so
the same size always gives the same list.

Derived files are written into the work directory, never into the repository.
"""

import gzip
import hashlib
import json
import os
import random
import re

# The UT1 categories blocked for pupils (schoolgate's demo pupil role, mapped
# back to UT1 names). `adult` has only a `urls` file in the shared data.
UT1_BLOCKED = [
    "adult", "mixed_adult", "lingerie", "gambling", "drogue", "agressif",
    "dangerous_material", "malware", "phishing", "hacking", "ddos", "cryptojacking",
    "bitcoin", "warez", "redirector", "residential-proxies", "vpn", "doh",
    "remote-control", "dating", "social_networks", "chat", "games", "dynamic-dns",
    "stalkerware",
]
# The schoolgate categories those UT1 names map to (Category::from_ut1).
SG_BLOCKED = [
    "pornography", "adult", "lingerie", "gambling", "drugs", "violence", "weapons",
    "malware", "phishing", "hacking", "cryptomining", "piracy", "proxy", "vpn", "doh",
    "remote-access", "dating", "social-networking", "chat", "games", "dynamic-dns",
    "stalkerware",
]
OTHER_LISTS = [
    "blocklistproject/gambling.txt.gz", "blocklistproject/drugs.txt.gz",
    "blocklistproject/piracy.txt.gz", "porntop/adult.txt.gz",
]

_NAME = re.compile(r"^(?=.{4,253}$)([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z][a-z0-9-]{0,61}[a-z0-9]$")
_TLDS = ["com", "net", "org", "info", "xyz", "co.uk", "de", "fr", "io", "ru", "top", "online"]
_SYLLABLES = ["ka", "lo", "mi", "ter", "bet", "vid", "zo", "pix", "net", "ra", "sun", "qu",
              "dex", "ha", "vo", "lin", "tor", "ami", "sto", "we"]


def read_lines(path):
    with gzip.open(path, "rt", encoding="utf-8", errors="replace") as f:
        for line in f:
            line = line.strip()
            if line and not line.startswith("#"):
                yield line


def clean(name):
    name = name.strip().lower().rstrip(".")
    if name.startswith("*."):
        name = name[2:]
    return name if _NAME.match(name) else None


def prune_covered(names):
    """Drops every name whose parent domain is also in the set."""
    keep = set(names)
    out = []
    for n in names:
        parts = n.split(".")
        if any(".".join(parts[i:]) in keep for i in range(1, len(parts) - 1)):
            continue
        out.append(n)
    return out


def _stable_key(name):
    return hashlib.blake2b(name.encode(), digest_size=8).digest()


def synthetic(i):
    rnd = random.Random(i)
    word = "".join(rnd.choice(_SYLLABLES) for _ in range(rnd.randint(2, 4)))
    return f"sgx{i:x}{word}.{rnd.choice(_TLDS)}"


def build_shared(data_dir, size, work):
    """Writes work/lists/shared-SIZE.txt (one domain per line) and returns
    (path, meta). Reuses the file when it exists."""
    out_dir = os.path.join(work, "lists")
    os.makedirs(out_dir, exist_ok=True)
    path = os.path.join(out_dir, f"shared-{size}.txt")
    meta_path = path + ".json"
    if os.path.exists(path) and os.path.exists(meta_path):
        with open(meta_path) as f:
            return path, json.load(f)
    real = set()
    for cat in UT1_BLOCKED:
        p = os.path.join(data_dir, "lists", "ut1", f"{cat}.txt.gz")
        if os.path.exists(p):
            real.update(filter(None, map(clean, read_lines(p))))
    for rel in OTHER_LISTS:
        real.update(filter(None, map(clean, read_lines(os.path.join(data_dir, "lists", rel)))))
    real = prune_covered(sorted(real, key=lambda n: n.count(".")))
    real_total = len(real)
    if real_total >= size:
        chosen = sorted(real, key=_stable_key)[:size]
        extension = []
    else:
        chosen = real
        taken = set(real)
        extension, i = [], 0
        while len(chosen) + len(extension) < size:
            n = synthetic(i)
            i += 1
            if n not in taken:
                taken.add(n)
                extension.append(n)
    names = sorted(chosen) + extension
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        f.write("\n".join(names) + "\n")
    os.replace(tmp, path)
    meta = {"size": len(names), "real_available": real_total,
            "real": len(chosen), "synthetic": len(extension)}
    with open(meta_path, "w") as f:
        json.dump(meta, f)
    return path, meta


def load_names(path):
    with open(path) as f:
        return [l.strip() for l in f if l.strip()]


def real_sample(names, k, seed=7):
    """k real (non-synthetic) names from the shared list, deterministic."""
    real = [n for n in names if not n.startswith("sgx")] or names
    rnd = random.Random(seed)
    return [rnd.choice(real) for _ in range(k)]


def write_derived(names, work, size):
    """Each peer's own syntax for the shared list. Returns {kind: path}."""
    out_dir = os.path.join(work, "lists")
    paths = {
        "unbound": os.path.join(out_dir, f"unbound-{size}.conf"),
        "dnsmasq": os.path.join(out_dir, f"dnsmasq-{size}.conf"),
        "squid": os.path.join(out_dir, f"squid-{size}.txt"),
    }
    if all(os.path.exists(p) for p in paths.values()):
        return paths
    with open(paths["unbound"], "w") as f:
        f.write("server:\n")
        f.writelines(f'  local-zone: "{n}." always_null\n' for n in names)
    with open(paths["dnsmasq"], "w") as f:
        f.writelines(f"address=/{n}/0.0.0.0\n" for n in names)
    with open(paths["squid"], "w") as f:
        f.writelines(f".{n}\n" for n in names)
    return paths


# Inputs for the load generators.

def benign_domains(data_dir):
    out = []
    for line in read_lines(os.path.join(data_dir, "benign", "top.txt.gz")):
        _, _, d = line.partition(",")
        d = clean(d)
        if d:
            out.append(d)
    return out


def classifier_urls(data_dir, n, work, seed=11):
    """work/classifier-N.txt: N URLs, 60% popular sites, 25% blocked UT1 domains
    (with and without subdomains), 15% UT1 `urls` entries, all with paths."""
    path = os.path.join(work, f"classifier-{n}.txt")
    if os.path.exists(path):
        return path
    rnd = random.Random(seed)
    benign = benign_domains(data_dir)
    blocked, urls = [], []
    for cat in UT1_BLOCKED:
        p = os.path.join(data_dir, "lists", "ut1", f"{cat}.txt.gz")
        if os.path.exists(p):
            blocked.extend(filter(None, map(clean, read_lines(p))))
        p = os.path.join(data_dir, "lists", "ut1", f"{cat}.urls.txt.gz")
        if os.path.exists(p):
            urls.extend(u for u in read_lines(p) if " " not in u)
    paths = ["/", "/index.html", "/news/2026/11/story-4821", "/search?q=homework+help",
             "/watch?v=dQw4w9WgXcQ", "/images/logo.png", "/login", "/a/b/c/d.js",
             "/products/item?id=9127&ref=home", "/wiki/Photosynthesis"]
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        for _ in range(n):
            r = rnd.random()
            if r < 0.60:
                host = rnd.choice(benign)
                if rnd.random() < 0.5:
                    host = "www." + host
                f.write(f"{rnd.choice(('http', 'https'))}://{host}{rnd.choice(paths)}\n")
            elif r < 0.85:
                host = rnd.choice(blocked)
                if rnd.random() < 0.4:
                    host = rnd.choice(("www.", "m.", "cdn.")) + host
                f.write(f"http://{host}{rnd.choice(paths)}\n")
            else:
                u = rnd.choice(urls)
                f.write(f"http://{u}{rnd.choice(('', '/', '/page.html'))}\n")
    os.replace(tmp, path)
    return path


def squidguard_input(urls_path, limit):
    """The first `limit` of the same URLs in Squid's redirector line format (no
    channel ids). squidGuard classifies about 10k URLs/s here, so feeding it the
    whole million would take a third of the full pass for no better a figure."""
    path = urls_path.replace(".txt", f".squidguard-{limit}.txt")
    if os.path.exists(path):
        return path
    tmp = path + ".tmp"
    with open(urls_path) as src, open(tmp, "w") as dst:
        for i, line in enumerate(src):
            if i == limit:
                break
            dst.write(f"{line.strip()} 127.0.0.1/- - GET\n")
    os.replace(tmp, path)
    return path


def dns_files(names, work, miss_count, seed=5):
    """Query files for dnsperf. Returns {mix: path}.

    - hit: 10 000 names asked over and over (warmed first): 90% allowed names
      under bench.test (answered by NSD, then cached), 10% blocked names;
    - miss: `miss_count` allowed names never asked before (each goes upstream),
      with 10% blocked names mixed in;
    - allowed: the hit mix without the blocked names (the logging workload).
    """
    rnd = random.Random(seed)
    blocked = real_sample(names, 1000, seed)
    blocked = [("www." + b if i % 2 else b) for i, b in enumerate(blocked)]
    out = {}
    hit = [f"h{i}.bench.test A" for i in range(9000)] + [f"{b} A" for b in blocked]
    rnd.shuffle(hit)
    out["hit"] = _write(os.path.join(work, "dns-hit.txt"), hit)
    out["allowed"] = _write(os.path.join(work, "dns-allowed.txt"),
                            [f"h{i}.bench.test A" for i in range(10000)])
    miss_path = os.path.join(work, f"dns-miss-{miss_count}.txt")
    if not os.path.exists(miss_path):
        lines = []
        for i in range(miss_count):
            if i % 10 == 9:
                lines.append(f"{rnd.choice(blocked)} A")
            else:
                lines.append(f"m{i}.bench.test A")
        _write(miss_path, lines)
    out["miss"] = miss_path
    out["blocked_names"] = blocked
    return out


def _write(path, lines):
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        f.write("\n".join(lines) + "\n")
    os.replace(tmp, path)
    return path
