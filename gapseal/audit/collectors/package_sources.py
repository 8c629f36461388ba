"""Where package managers and container engines fetch from: every configured source, mirror, registry and proxy.

- apt: ``etc/apt/sources.list``, ``sources.list.d/*.list`` and ``*.sources`` (deb822; ``Enabled: no`` skipped):
  ``deb``/``deb-src`` URIs (``mirror+file:`` lists are read); ``etc/apt/apt.conf`` and ``apt.conf.d/*``:
  ``Acquire::<scheme>::Proxy`` (``DIRECT`` means none) and ``Proxy-Auto-Detect``.
- pip: ``etc/pip.conf``, ``etc/xdg/pip/pip.conf``, each home's ``.pip/pip.conf`` and ``.config/pip/pip.conf``:
  ``index-url``, ``extra-index-url``, ``find-links`` (URLs), ``proxy``.
- npm: ``etc/npmrc``, ``usr/etc/npmrc``, each home's ``.npmrc``: ``registry``, ``@scope:registry``, ``proxy``,
  ``https-proxy``, ``http-proxy``.
- conda: ``etc/conda/.condarc``, ``etc/conda/condarc``, ``condarc.d/*``, ``opt/conda/.condarc``, each home's
  ``.condarc``, ``.conda/.condarc``, ``.config/conda/.condarc``: ``channels`` (names resolved against
  ``channel_alias``, ``defaults`` against ``default_channels``, as conda does; no ``channels`` means ``defaults``),
  ``custom_channels``, ``proxy_servers``.
- podman: ``etc/containers/registries.conf``, ``registries.conf.d/*.conf``, each home's
  ``.config/containers/registries.conf``: ``unqualified-search-registries``, ``[[registry]]`` ``location``
  (``blocked`` ones are local: nothing is fetched), ``[[registry.mirror]]``, v1 ``[registries.search]``.
- docker: ``etc/docker/daemon.json``: ``registry-mirrors``, ``insecure-registries``, ``proxies``.

Short-name ``[aliases]`` of registries.conf are not sources: they only name where a short name would be pulled from.
Files that may hold credentials (pip.conf, npmrc, condarc, apt auth) are hashed, not stored; URL userinfo is masked.
A file that exists but cannot be parsed makes the domain ``unknown``.
"""

from __future__ import annotations

import ipaddress
import json
import re
import shlex
import tomllib
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

import yaml

from gapseal.audit.collectors._common import RawStore, Trace, network, under_root, unreadable
from gapseal.audit.collectors.proxy import mask_credentials
from gapseal.audit.facts import PackageSource, PackageSourcesFacts

Manager = Literal["apt", "pip", "npm", "conda", "podman", "docker"]
Kind = Literal["source", "mirror", "registry", "proxy"]

LOCAL_SCHEMES = {"file", "cdrom", "copy"}
CONDA_CHANNEL_ALIAS = "https://conda.anaconda.org"
CONDA_DEFAULT_CHANNELS = ("https://repo.anaconda.com/pkgs/main", "https://repo.anaconda.com/pkgs/r")
"""conda's built-in ``channel_alias`` and ``default_channels`` (conda docs, "Using the .condarc conda configuration
file": channel_alias default ``https://conda.anaconda.org``; default_channels ``pkgs/main`` and ``pkgs/r``)."""


def endpoint(value: str) -> tuple[str | None, int | None, str | None, bool]:
    """Host, port, ``host[:port]`` and whether fetching is local, for a URL or a bare ``host[:port][/path]``."""
    text = value.strip()
    scheme = ""
    if "://" in text:
        scheme = text.split("://", 1)[0].lower()
    elif text.split(":", 1)[0].lower().split("+")[-1] in LOCAL_SCHEMES:  # file:/srv/repo, cdrom:[label]/
        scheme = text.split(":", 1)[0].lower()
    if scheme.split("+")[-1] in LOCAL_SCHEMES or text.startswith("/"):
        return None, None, None, True
    try:
        parts = urlsplit(text if scheme else f"//{text}")
        host, port = parts.hostname, parts.port
    except ValueError:  # a bad bracketed host or a port that is not a number: not known to be local
        return None, None, None, False
    if not host:
        return None, None, None, False
    netloc = parts.netloc.rsplit("@", 1)[-1].lower()
    try:
        local = ipaddress.ip_address(host).is_loopback
    except ValueError:
        local = host == "localhost"
    return host, port, netloc, local


class _Collector:
    def __init__(self, store: RawStore, root: Path) -> None:
        self.trace = Trace(store)
        self.root = root
        self.entries: list[PackageSource] = []
        self.problems: list[str] = []

    def add(self, manager: Manager, kind: Kind, value: str, location: str, *, local: bool | None = None) -> None:
        host, port, hostport, is_local = endpoint(value)
        net = None
        if host is not None:
            try:
                net = network(host)
            except ValueError:
                net = None
        self.entries.append(
            PackageSource(
                manager=manager,
                kind=kind,
                value=mask_credentials(value.strip()),
                host=host,
                port=port,
                hostport=hostport,
                network=net,
                local=is_local if local is None else local,
                location=location,
            )
        )

    def read(self, path: Path, *, store: bool = True) -> str | None:
        return self.trace.read_text(path, store=store, record_missing=False)

    def homes(self) -> list[Path]:
        homes = [self.root / "root"]
        base = self.root / "home"
        if base.is_dir():
            homes += sorted(p for p in base.iterdir() if p.is_dir() and not p.is_symlink())
        return homes

    # ---------------------------------------------------------------------------------------------- apt

    def apt(self) -> None:
        etc = self.root / "etc" / "apt"
        lists = [etc / "sources.list", *self.trace.listdir(etc / "sources.list.d", "*.list")]
        for f in lists:
            text = self.read(f)
            for n, raw in enumerate((text or "").splitlines(), 1):
                line = raw.split("#", 1)[0].strip()
                words = line.split()
                if not words or words[0] not in {"deb", "deb-src"}:
                    continue
                rest = line.split(None, 1)[1] if len(words) > 1 else ""
                if rest.startswith("["):
                    rest = rest.split("]", 1)[1] if "]" in rest else ""
                uri = rest.split()[0] if rest.split() else ""
                if uri:
                    self.apt_uri(uri, f"{f}:{n}")
        for f in self.trace.listdir(etc / "sources.list.d", "*.sources"):
            text = self.read(f)
            for stanza in re.split(r"\n\s*\n", text or ""):
                fields: dict[str, str] = {}
                key = None
                for raw in stanza.splitlines():
                    if raw.startswith("#"):
                        continue
                    if raw[:1].isspace() and key:
                        fields[key] += " " + raw.strip()
                    elif ":" in raw:
                        key, _, value = raw.partition(":")
                        key = key.strip().lower()
                        fields[key] = value.strip()
                if fields.get("enabled", "yes").lower() == "no":
                    continue
                for uri in fields.get("uris", "").split():
                    self.apt_uri(uri, f"{f}:URIs")
        confs = [etc / "apt.conf", *self.trace.listdir(etc / "apt.conf.d")]
        for f in confs:
            if not f.is_file():
                continue
            text = self.read(f, store=False)
            if text is None:
                continue
            try:
                items = parse_apt_conf(text)
            except ValueError as e:
                self.problems.append(f"{f}: {e}")
                continue
            for key, value in items:
                k = key.lower()
                m = re.fullmatch(r"acquire::(http|https|ftp|socks5?)::proxy(::.+)?", k)
                if m and value and value.upper() != "DIRECT" and value.lower() != "false":
                    self.add("apt", "proxy", value, f"{f}:{key}")
                elif re.fullmatch(r"acquire::(http|https)::proxy-auto-detect", k) and value:
                    self.add("apt", "proxy", f"auto-detect:{value}", f"{f}:{key}", local=False)

    def apt_uri(self, uri: str, location: str) -> None:
        if uri.startswith("mirror+file:") or uri.startswith("mirror+copy:"):
            path = under_root(self.root, "/" + uri.split(":", 1)[1].lstrip("/"))
            text = self.read(path)
            if text is None:
                self.problems.append(f"{location}: mirror list {path} unreadable")
                return
            for n, raw in enumerate(text.splitlines(), 1):
                line = raw.split("#", 1)[0].split()
                if line:
                    self.add("apt", "mirror", line[0], f"{path}:{n}")
            return
        self.add("apt", "source", uri.split("+", 1)[1] if uri.startswith(("mirror+", "tor+")) else uri, location)

    # ---------------------------------------------------------------------------------------------- pip, npm

    def pip(self) -> None:
        files = [self.root / "etc/pip.conf", self.root / "etc/xdg/pip/pip.conf"]
        for home in self.homes():
            files += [home / ".pip/pip.conf", home / ".config/pip/pip.conf"]
        for f in files:
            text = self.read(f, store=False)
            if text is None:
                continue
            for section, key, value, n in parse_ini_multiline(text):
                if section not in {"global", "install", "download", "wheel"}:
                    continue
                if key in {"index-url", "extra-index-url", "find-links"}:
                    for v in value.split():
                        if "://" in v or not v.startswith(("/", ".")):
                            self.add("pip", "source", v, f"{f}:{n}")
                elif key == "proxy" and value:
                    self.add("pip", "proxy", value, f"{f}:{n}")

    def npm(self) -> None:
        files = [self.root / "etc/npmrc", self.root / "usr/etc/npmrc"]
        files += [home / ".npmrc" for home in self.homes()]
        for f in files:
            text = self.read(f, store=False)
            for n, raw in enumerate((text or "").splitlines(), 1):
                line = raw.strip()
                if not line or line.startswith(("#", ";")) or "=" not in line:
                    continue
                key, _, value = line.partition("=")
                key, value = key.strip().lower(), value.strip().strip("\"'")
                if key == "registry" or key.endswith(":registry"):
                    self.add("npm", "source", value, f"{f}:{n}")
                elif key in {"proxy", "https-proxy", "http-proxy"} and value and value.lower() not in {"null", "false"}:
                    self.add("npm", "proxy", value, f"{f}:{n}")

    # ---------------------------------------------------------------------------------------------- conda

    def conda(self) -> None:
        files = [self.root / "etc/conda/.condarc", self.root / "etc/conda/condarc"]
        files += self.trace.listdir(self.root / "etc/conda/condarc.d")
        files += [self.root / "opt/conda/.condarc"]
        for home in self.homes():
            files += [home / ".condarc", home / ".conda/.condarc", home / ".config/conda/.condarc"]
        for f in files:
            if not f.is_file():
                continue
            text = self.read(f, store=False)
            if text is None:
                continue
            try:
                doc = yaml.safe_load(text) or {}
            except yaml.YAMLError as e:
                self.problems.append(f"{f}: not valid YAML: {e}")
                continue
            if not isinstance(doc, dict):
                self.problems.append(f"{f}: not a mapping")
                continue
            self.conda_doc(doc, f)

    def conda_doc(self, doc: dict[str, Any], f: Path) -> None:
        alias = str(doc.get("channel_alias") or CONDA_CHANNEL_ALIAS).rstrip("/")
        defaults = [str(c) for c in doc.get("default_channels") or CONDA_DEFAULT_CHANNELS]
        custom = doc.get("custom_channels") or {}
        channels = doc.get("channels")
        if channels is None:
            channels = ["defaults"]  # conda's own default
        for ch in channels if isinstance(channels, list) else [channels]:
            name = str(ch)
            if name == "defaults":
                for d in defaults:
                    self.add("conda", "source", d, f"{f}:channels (defaults)")
            elif "://" in name or name.startswith(("file:", "/")):
                self.add("conda", "source", name, f"{f}:channels")
            elif isinstance(custom, dict) and name.split("/")[0] in custom:
                self.add("conda", "source", f"{str(custom[name.split('/')[0]]).rstrip('/')}/{name}", f"{f}:channels")
            else:
                self.add("conda", "source", f"{alias}/{name}", f"{f}:channels (channel_alias)")
        proxies = doc.get("proxy_servers") or {}
        if isinstance(proxies, dict):
            for scheme, value in sorted(proxies.items()):
                if value:
                    self.add("conda", "proxy", str(value), f"{f}:proxy_servers.{scheme}")

    # ---------------------------------------------------------------------------------------------- podman, docker

    def podman(self) -> None:
        base = self.root / "etc/containers"
        files = [base / "registries.conf", *self.trace.listdir(base / "registries.conf.d", "*.conf")]
        files += [home / ".config/containers/registries.conf" for home in self.homes()]
        for f in files:
            text = self.read(f)
            if text is None:
                continue
            try:
                doc = tomllib.loads(text)
            except tomllib.TOMLDecodeError as e:
                self.problems.append(f"{f}: not valid TOML: {e}")
                continue
            for reg in doc.get("unqualified-search-registries", []) or []:
                self.add("podman", "registry", str(reg), f"{f}:unqualified-search-registries")
            for i, table in enumerate(doc.get("registry", []) or []):
                if not isinstance(table, dict):
                    continue
                blocked = bool(table.get("blocked", False))
                where = f"{f}:registry[{i}]"
                location = table.get("location") or table.get("prefix")
                if location:
                    self.add("podman", "registry", str(location), where, local=True if blocked else None)
                for mirror in table.get("mirror", []) or []:
                    if isinstance(mirror, dict) and mirror.get("location"):
                        self.add("podman", "mirror", str(mirror["location"]), f"{where}.mirror")
            v1 = doc.get("registries", {})
            if isinstance(v1, dict):
                search = v1.get("search", {})
                for reg in (search.get("registries", []) if isinstance(search, dict) else []) or []:
                    self.add("podman", "registry", str(reg), f"{f}:registries.search")

    def docker(self) -> None:
        f = self.root / "etc/docker/daemon.json"
        text = self.read(f, store=False)
        if text is None:
            return
        try:
            doc = json.loads(text)
        except json.JSONDecodeError as e:
            self.problems.append(f"{f}: not valid JSON: {e}")
            return
        if not isinstance(doc, dict):
            self.problems.append(f"{f}: not a JSON object")
            return
        for m in doc.get("registry-mirrors", []) or []:
            self.add("docker", "mirror", str(m), f"{f}:registry-mirrors")
        for r in doc.get("insecure-registries", []) or []:
            self.add("docker", "registry", str(r), f"{f}:insecure-registries")
        proxies = doc.get("proxies", {}) or {}
        if isinstance(proxies, dict):
            for key in ("http-proxy", "https-proxy"):
                if proxies.get(key):
                    self.add("docker", "proxy", str(proxies[key]), f"{f}:proxies.{key}")


def parse_apt_conf(text: str) -> list[tuple[str, str]]:
    """Flatten apt.conf(5) text (``A::B "v";`` and ``A { B "v"; };`` forms, comments) into ``(key, value)`` pairs."""
    text = re.sub(r"/\*.*?\*/", " ", text, flags=re.S)
    lines = []
    for raw in text.splitlines():
        stripped = raw.lstrip()
        if stripped.startswith(("#", "//")):
            continue
        lines.append(re.sub(r"\s//.*$", "", raw))
    lexer = shlex.shlex("\n".join(lines), posix=True, punctuation_chars="{};")
    lexer.commenters = ""
    lexer.wordchars += ":-.+/_*@=~%!$^&,?"
    tokens: list[str] = []
    for tok in lexer:  # shlex groups adjacent punctuation ("};"): split it again
        tokens += list(tok) if tok and all(c in "{};" for c in tok) else [tok]
    out: list[tuple[str, str]] = []
    stack: list[str] = []
    i = 0
    while i < len(tokens):
        tok = tokens[i]
        if tok == "}":
            if not stack:
                raise ValueError("unbalanced '}'")
            stack.pop()
            i += 1
            continue
        if tok == ";":
            i += 1
            continue
        if tok.startswith("#"):  # #include / #clear directives
            while i < len(tokens) and tokens[i] != ";":
                i += 1
            continue
        key = "::".join([*stack, tok]) if stack else tok
        nxt = tokens[i + 1] if i + 1 < len(tokens) else ";"
        if nxt == "{":
            stack.append(tok)
            i += 2
            continue
        if nxt == ";":
            i += 2
            continue
        out.append((key, nxt))
        i += 2
        if i < len(tokens) and tokens[i] == "{":  # 'Key "v" { ... };' — a value with a sub-tree
            stack.append(tok)
            i += 1
    if stack:
        raise ValueError("unbalanced '{'")
    return out


def parse_ini_multiline(text: str) -> list[tuple[str, str, str, int]]:
    """``(section, key, value, line)`` of an ini file whose values may continue on indented lines (pip.conf)."""
    out: list[tuple[str, str, str, int]] = []
    section = ""
    for n, raw in enumerate(text.splitlines(), 1):
        if not raw.strip() or raw.lstrip().startswith(("#", ";")):
            continue
        if raw[:1].isspace() and out:
            s, k, v, ln = out[-1]
            out[-1] = (s, k, f"{v} {raw.strip()}".strip(), ln)
            continue
        line = raw.strip()
        if line.startswith("[") and line.endswith("]"):
            section = line[1:-1].strip().lower()
            continue
        sep = "=" if "=" in line else ":"
        if sep not in line:
            continue
        key, _, value = line.partition(sep)
        out.append((section, key.strip().lower().replace("_", "-"), value.strip(), n))
    return out


def collect_package_sources(store: RawStore, root: Path) -> PackageSourcesFacts:
    """Collect every package and container source under ``root``."""
    c = _Collector(store, root)
    for step in (c.apt, c.pip, c.npm, c.conda, c.podman, c.docker):
        step()
    c.problems += unreadable(c.trace)
    return PackageSourcesFacts(
        status="unknown" if c.problems else "ok",
        reason="; ".join(c.problems) or None,
        sources=c.trace.sources,
        entries=c.entries,
    )
