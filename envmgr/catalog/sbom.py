"""A software bill of materials for every build: CycloneDX 1.6 JSON, and SPDX 2.3 JSON on request.

Written at build time into the record (``records/<family>/<build-id>/sbom.cdx.json``), so
it outlives the prefix like the rest of the tombstone. Builds recorded before SBOMs
existed get one from their record on request (``ensure_sbom``), and it is stored then.

What goes in (docs/security.md):

* the build as the root component (``metadata.component``): the family, build id,
  lock digest, spec hash and platform as ``envmgr:*`` properties;
* one ``library`` component per conda package of the lock, with its purl
  ``pkg:conda/<name>@<version>?build=…&channel=…&subdir=…&type=…``, the channel's
  license declaration and the package file's sha256 (and md5);
* one component per ``manager: pip`` entry of the lock, as ``pkg:pypi/<name>@<version>``;
* the dependency graph (root -> every package, conda package -> what it depends on).

The document is made with cyclonedx-python-lib and the purls with packageurl-python
(both imported only here and only when needed: they cost CLI start-up time). URLs lose
any user:password part and conda ``/t/<token>/`` path before they are written.
"""

from __future__ import annotations

import functools
import json
import re
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit, urlunsplit

from envmgr import __version__
from envmgr.catalog import records
from envmgr.catalog.records import BuildRecord
from envmgr.clock import parse_iso
from envmgr.errors import NotFound
from envmgr.fsutil import atomic_write_text, read_json
from envmgr.layout import Layout

FORMATS = ("cyclonedx-json", "spdx-json")
CONDA, PIP = "conda", "pip"
_TOKEN_PATH = re.compile(r"/t/[^/]+/")
_NAMESPACE = uuid.UUID("6c1f3a0e-5d7b-4d52-9b8e-8f0c2b1e7a41")  # envmgr's uuid5 namespace


# -- the package list ------------------------------------------------------------------------

def public_url(url: str) -> str:
    """``url`` without credentials: no ``user:password@`` and no conda ``/t/<token>/`` segment."""
    if not url or "://" not in url:
        return url
    parts = urlsplit(url)
    host = parts.hostname or ""
    if parts.port:
        host += f":{parts.port}"
    return urlunsplit((parts.scheme, host, _TOKEN_PATH.sub("/", parts.path), parts.query, ""))


def channel_of(url: str) -> str:
    """The channel URL of a package URL (``<channel>/<subdir>/<file>``), credentials removed."""
    clean = public_url(url)
    return clean.rsplit("/", 2)[0] if clean.count("/") >= 4 else clean


def _archive_type(url: str) -> str:
    name = unquote(urlsplit(url).path)
    return "tar.bz2" if name.endswith(".tar.bz2") else "conda" if name.endswith(".conda") else ""


@dataclass(frozen=True)
class SbomPackage:
    """One package of a build, as the SBOM and the advisory check see it."""

    manager: str  # conda | pip
    name: str
    version: str
    build: str = ""
    subdir: str = ""
    channel: str = ""  # the spec's channel name when known, else the channel URL
    url: str = ""
    sha256: str = ""
    md5: str = ""
    license: str = ""
    depends: tuple[str, ...] = ()

    def package_url(self) -> Any:
        """The ``packageurl.PackageURL`` (pkg:conda with build/channel/subdir/type, or pkg:pypi)."""
        from packageurl import PackageURL

        if self.manager == PIP:
            return PackageURL(type="pypi", name=self.name.lower(), version=self.version)
        qualifiers = {k: v for k, v in (("build", self.build), ("channel", self.channel),
                                        ("subdir", self.subdir), ("type", _archive_type(self.url))) if v}
        return PackageURL(type="conda", name=self.name, version=self.version, qualifiers=qualifiers)

    @property
    def purl(self) -> str:
        return str(self.package_url().to_string())


@dataclass(frozen=True)
class SbomInfo:
    """Everything a bill of materials says about one build."""

    family: str
    build_id: str
    lock_digest: str
    spec_hash: str
    platform: str
    created: str
    packages: tuple[SbomPackage, ...]
    deleted: str | None = None
    notes: tuple[str, ...] = field(default=())

    @property
    def serial(self) -> uuid.UUID:
        """Stable per build and content: generating the SBOM again yields the same document id."""
        return uuid.uuid5(_NAMESPACE, f"{self.family}/{self.build_id}/{self.lock_digest}")


def _channel_names(spec_channels: list[str], urls: list[str]) -> dict[str, str]:
    """Resolved channel URL -> the spec's name for it (the lock lists them in the spec's order)."""
    if len(spec_channels) != len(urls):
        return {}
    return {public_url(u).rstrip("/"): name for name, u in zip(spec_channels, urls)}


def _recorded_spec_channels(record_dir: Path) -> list[str]:
    from envmgr.define.spec import load_spec

    try:
        return list(load_spec(record_dir / "spec.yaml").channels)
    except Exception:  # noqa: BLE001 - an unreadable old spec only costs the channel names
        return []


def _lock_channels(lock_file: Path) -> list[str]:
    """The channel URLs a recorded conda-lock.yml names (empty for a build without one)."""
    from envmgr._internal import _condalock

    if not lock_file.is_file():
        return []
    return _condalock.read_lockfile(lock_file)[1]


def build_info(layout: Layout, record: BuildRecord, licenses: Mapping[str, str] | None = None,
               spec_channels: list[str] | None = None) -> SbomInfo:
    """The SBOM's content from a build's record files (packages.json, conda-lock.yml, spec.yaml).

    ``licenses`` (name -> license) come from the solver's records at build time; for
    older builds they are read from the prefix's conda-meta or the channel's repodata.
    """
    rec_dir = layout.record_dir(record.family, record.build_id)
    data = read_json(rec_dir / "packages.json")
    if not data:
        raise NotFound(f"build {record.build_id} of {record.family} has no package list "
                       f"({rec_dir / 'packages.json'})", hint="it failed before it was locked")
    platform = data.get("platform", "linux-64")
    lock_channels = _lock_channels(rec_dir / "conda-lock.yml")
    names = _channel_names(spec_channels if spec_channels is not None else
                           _recorded_spec_channels(rec_dir), lock_channels)
    conda_entries = [p for p in data["packages"] if p.get("manager", CONDA) == CONDA]
    # packages.json holds the `manager: pip` entries too (the lock's, as installed).
    pip = [{"name": p["name"], "version": p["version"], "url": p.get("url", ""),
             "sha256": p.get("sha256", "")} for p in data["packages"] if p.get("manager") == PIP]
    notes: list[str] = []
    if licenses is None:
        licenses, source = recorded_licenses(layout, record, conda_entries)
        notes.append(f"generated from the record on request; licenses from {source}")
    packages = [_conda_package(p, names, licenses) for p in conda_entries]
    seen = {p.name for p in packages}
    packages += [SbomPackage(PIP, p["name"], p["version"], url=public_url(p.get("url", "")),
                             sha256=p.get("sha256", ""))
                 for p in sorted(pip, key=lambda p: p["name"]) if p["name"] not in seen]
    return SbomInfo(family=record.family, build_id=record.build_id,
                    lock_digest=record.lock_digest or data.get("digest", ""),
                    spec_hash=record.spec_hash, platform=platform,
                    created=record.started, packages=tuple(packages), deleted=record.deleted,
                    notes=tuple(notes))


def _conda_package(p: dict[str, Any], names: Mapping[str, str], licenses: Mapping[str, str]) -> SbomPackage:
    channel_url = channel_of(p.get("url", ""))
    return SbomPackage(CONDA, p["name"], p["version"], build=p.get("build", ""),
                       subdir=p.get("subdir", ""), channel=names.get(channel_url.rstrip("/"), channel_url),
                       url=public_url(p.get("url", "")), sha256=p.get("sha256", ""),
                       md5=p.get("md5", ""), license=licenses.get(p["name"], ""),
                       depends=tuple(p.get("depends") or ()))


def recorded_licenses(layout: Layout, record: BuildRecord,
                      packages: Iterable[dict[str, Any]]) -> tuple[dict[str, str], str]:
    """Licenses for an older build: its prefix's conda-meta, else local channels' repodata."""
    meta = layout.prefix(record.family, record.build_id) / "conda-meta"
    found: dict[str, str] = {}
    if meta.is_dir():
        for path in meta.glob("*.json"):
            entry = read_json(path) or {}
            if entry.get("name") and entry.get("license"):
                found[entry["name"]] = entry["license"]
        return found, f"the prefix's conda-meta ({meta})"
    repodata: dict[Path, dict[str, Any]] = {}
    for p in packages:
        parts = urlsplit(p.get("url", ""))
        if parts.scheme != "file":
            continue
        path = Path(unquote(parts.path))
        index_file = path.parent / "repodata.json"
        if index_file not in repodata:
            repodata[index_file] = read_json(index_file) or {}
        index = repodata[index_file]
        entry = (index.get("packages.conda") or {}).get(path.name) or \
            (index.get("packages") or {}).get(path.name) or {}
        if entry.get("license"):
            found[p["name"]] = entry["license"]
    return found, "local channel repodata" if found else "nowhere (the prefix is gone)"


# -- CycloneDX ---------------------------------------------------------------------------------

def _depends_names(depends: Iterable[str]) -> set[str]:
    return {d.split()[0] for d in depends if d.strip()}


def cyclonedx_json(info: SbomInfo) -> str:
    """The CycloneDX 1.6 JSON document for ``info`` (made by cyclonedx-python-lib)."""
    from cyclonedx.model import ExternalReference, ExternalReferenceType, HashAlgorithm, HashType
    from cyclonedx.model import Property, XsUri
    from cyclonedx.model.bom import Bom
    from cyclonedx.model.component import Component, ComponentType
    from cyclonedx.model.dependency import Dependency
    from cyclonedx.output.json import JsonV1Dot6

    root = Component(type=ComponentType.APPLICATION, name=info.family, version=info.build_id,
                     bom_ref=f"envmgr-build:{info.family}/{info.build_id}",
                     description=f"envmgr build {info.build_id} of family {info.family}",
                     properties=[Property(name=f"envmgr:{k}", value=v) for k, v in (
                         ("family", info.family), ("build_id", info.build_id),
                         ("lock_digest", info.lock_digest), ("spec_hash", info.spec_hash),
                         ("platform", info.platform), *((("deleted", info.deleted),) if info.deleted else ()),
                         *(("note", n) for n in info.notes)) if v])
    bom = Bom(serial_number=info.serial)
    bom.metadata.component = root
    moment = parse_iso(info.created)
    if moment is not None:
        bom.metadata.timestamp = moment
    bom.metadata.tools.components.add(Component(type=ComponentType.APPLICATION, name="envmgr",
                                                version=__version__))
    components: dict[str, Any] = {}
    for p in info.packages:
        hashes = [HashType(alg=HashAlgorithm.SHA_256, content=p.sha256)] if p.sha256 else []
        if p.md5:
            hashes.append(HashType(alg=HashAlgorithm.MD5, content=p.md5))
        refs = [ExternalReference(type=ExternalReferenceType.DISTRIBUTION, url=XsUri(p.url))] if p.url else []
        props = [Property(name="envmgr:manager", value=p.manager)]
        if p.manager == CONDA and p.channel:
            props.append(Property(name="conda:channel", value=p.channel))
        purl = p.package_url()
        component = Component(type=ComponentType.LIBRARY, name=p.name, version=p.version,
                              bom_ref=purl.to_string(), purl=purl, hashes=hashes,
                              licenses=_licenses(p.license), external_references=refs,
                              properties=props)
        components[p.name] = component
        bom.components.add(component)
    # Dependency objects made here, not with Bom.register_dependency: that searches the
    # list on every call (quadratic: 5 s for 500 packages, see benchmarks/advisories.py).
    graph = [Dependency(ref=root.bom_ref, dependencies=[Dependency(ref=c.bom_ref) for c in components.values()])]
    for p in info.packages:
        names = sorted(n for n in _depends_names(p.depends) if n in components and n != p.name)
        graph.append(Dependency(ref=components[p.name].bom_ref,
                                dependencies=[Dependency(ref=components[n].bom_ref) for n in names]))
    bom.dependencies.update(graph)
    return JsonV1Dot6(bom).output_as_string(indent=2)


def _licenses(text: str) -> list[Any]:
    """An SPDX id or expression when it is one, else the license as a name (conda's free text)."""
    if not text.strip():
        return []
    try:
        from cyclonedx.contrib.license.factories import LicenseFactory
    except ImportError:  # cyclonedx-python-lib < 11.7
        from cyclonedx.factory.license import LicenseFactory
    return [LicenseFactory().make_from_string(text.strip())]


# -- SPDX -------------------------------------------------------------------------------------

_SPDX_ID = re.compile(r"[^A-Za-z0-9.\-]+")


def _spdx_ref(prefix: str, text: str) -> str:
    return f"SPDXRef-{prefix}-{_SPDX_ID.sub('-', text)}"


def spdx_json(info: SbomInfo) -> str:
    """SPDX 2.3 JSON of the same content (a small writer; tests validate it with spdx-tools).

    Licenses go to ``licenseDeclared`` only when they are an SPDX expression the
    license-expression library (a dependency of cyclonedx-python-lib) accepts;
    conda's free-text licenses become ``NOASSERTION`` with the text in a comment.
    """
    root_id = _spdx_ref("Build", f"{info.family}-{info.build_id}")
    packages: list[dict[str, Any]] = [{
        "SPDXID": root_id, "name": info.family, "versionInfo": info.build_id,
        "downloadLocation": "NOASSERTION", "filesAnalyzed": False, "primaryPackagePurpose": "APPLICATION",
        "comment": f"envmgr build {info.build_id} of family {info.family}; lock digest {info.lock_digest}",
    }]
    relationships = [{"spdxElementId": "SPDXRef-DOCUMENT", "relationshipType": "DESCRIBES",
                      "relatedSpdxElement": root_id}]
    for p in info.packages:
        ref = _spdx_ref("Package", f"{p.manager}-{p.name}")
        entry: dict[str, Any] = {
            "SPDXID": ref, "name": p.name, "versionInfo": p.version,
            "downloadLocation": p.url if p.url.startswith(("http://", "https://", "ftp://"))
            else "NOASSERTION", "filesAnalyzed": False,
            "primaryPackagePurpose": "LIBRARY",
            "externalRefs": [{"referenceCategory": "PACKAGE-MANAGER", "referenceType": "purl",
                              "referenceLocator": p.purl}],
        }
        if p.url and entry["downloadLocation"] == "NOASSERTION":
            entry["sourceInfo"] = f"installed from {p.url}"  # SPDX has no file:// download location
        if p.sha256:
            entry["checksums"] = [{"algorithm": "SHA256", "checksumValue": p.sha256}]
        spdx_license = _spdx_expression(p.license)
        entry["licenseConcluded"] = "NOASSERTION"
        entry["licenseDeclared"] = spdx_license or "NOASSERTION"
        if p.license and not spdx_license:
            entry["licenseComments"] = f"declared by the channel as: {p.license}"
        packages.append(entry)
        relationships.append({"spdxElementId": root_id, "relationshipType": "CONTAINS",
                              "relatedSpdxElement": ref})
    document = {
        "spdxVersion": "SPDX-2.3", "dataLicense": "CC0-1.0", "SPDXID": "SPDXRef-DOCUMENT",
        "name": f"envmgr-{info.family}-{info.build_id}",
        "documentNamespace": f"urn:uuid:{info.serial}",
        "creationInfo": {"created": (info.created or "1970-01-01T00:00:00Z").replace("+00:00", "Z"),
                         "creators": [f"Tool: envmgr-{__version__}"]},
        "packages": packages, "relationships": relationships,
    }
    return json.dumps(document, indent=2)


@functools.lru_cache(maxsize=1)
def _spdx_licensing() -> Any:
    """license-expression's SPDX licensing (a dependency of cyclonedx-python-lib); slow to build."""
    try:
        from license_expression import get_spdx_licensing
    except ImportError:
        return None
    return get_spdx_licensing()


def _spdx_expression(text: str) -> str | None:
    licensing = _spdx_licensing() if text.strip() else None
    if licensing is None:
        return None
    try:
        parsed = licensing.parse(text, validate=True, strict=True)
    except Exception:  # noqa: BLE001 - free text is not an expression
        return None
    return str(parsed) if parsed is not None else None


# -- the record file ---------------------------------------------------------------------------

def write_sbom(layout: Layout, record: BuildRecord, licenses: Mapping[str, str],
               spec_channels: list[str]) -> Path:
    """Write the build's CycloneDX SBOM into its record (build time; atomic)."""
    path = layout.sbom(record.family, record.build_id)
    atomic_write_text(path, cyclonedx_json(build_info(layout, record, licenses, spec_channels)) + "\n")
    return path


def read_sbom(layout: Layout, family: str, build_id: str) -> dict[str, Any] | None:
    """The stored CycloneDX document of a build, or None when it has none."""
    try:
        return read_json(layout.sbom(family, build_id))
    except (OSError, ValueError):
        return None


def ensure_sbom(layout: Layout, record: BuildRecord) -> tuple[str, bool]:
    """(CycloneDX JSON text, whether it was generated now) for any build with a package list.

    An older build without an SBOM gets one from its record; it is stored when the
    record directory is writable (the service account), else only returned.
    """
    path = layout.sbom(record.family, record.build_id)
    try:
        return path.read_text(encoding="utf-8"), False
    except FileNotFoundError:
        pass
    text = cyclonedx_json(build_info(layout, record)) + "\n"
    try:
        atomic_write_text(path, text)
    except OSError:
        pass  # read-only for this user: generated again next time
    return text, True


def sbom_packages(document: dict[str, Any]) -> list[tuple[str, str, str]]:
    """(manager, name, version) of every component of a CycloneDX document, from its purls."""
    from packageurl import PackageURL

    found = []
    for component in document.get("components") or []:
        purl = component.get("purl")
        if not purl:
            continue
        parsed = PackageURL.from_string(purl)
        manager = {"conda": CONDA, "pypi": PIP}.get(parsed.type)
        if manager and parsed.version:
            found.append((manager, parsed.name, parsed.version))
    return found


def resolve_build(layout: Layout, family: str, ref: str | None,
                  releases: Iterable[Any] = ()) -> BuildRecord:
    """A build of ``family`` by id, stable release name, ``latest`` or nothing (latest)."""
    if ref in (None, "", "latest"):
        ref = layout.latest_build(family)
        if ref is None:
            raise NotFound(f"family '{family}' has no latest build",
                           hint=f"name a build: `envmgr builds {family}` lists them")
    for release in releases:
        if release.release == ref:
            ref = release.build_id
            break
    record = records.load(layout, family, ref)
    if record is None:
        raise NotFound(f"family '{family}' has no build or stable release '{ref}'",
                       hint=f"`envmgr builds {family}` lists builds and releases")
    return record


def write_for_lock(layout: Layout, family: str, build_id: str, channel_records: Iterable[Any],
                   spec_channels: list[str]) -> Path:
    """Build time: the new build's SBOM into its record, licenses from the solver's channel records.

    Runs after the record's packages.json and conda-lock.yml are written (same thread).
    """
    from envmgr._internal import _rattler

    record = records.load(layout, family, build_id)
    if record is None:
        raise NotFound(f"build {build_id} of {family} has no record to write its SBOM into")
    return write_sbom(layout, record, _rattler.record_licenses(channel_records), spec_channels)


def info_from_cyclonedx(document: dict[str, Any]) -> SbomInfo:
    """Read a stored CycloneDX document back (so SPDX output says exactly what it says)."""
    from packageurl import PackageURL

    root = (document.get("metadata") or {}).get("component") or {}
    props = {p.get("name"): p.get("value") for p in root.get("properties") or []}
    packages = []
    for c in document.get("components") or []:
        if not c.get("purl"):
            continue
        purl = PackageURL.from_string(c["purl"])
        q = purl.qualifiers if isinstance(purl.qualifiers, dict) else {}
        hashes = {h.get("alg"): h.get("content") for h in c.get("hashes") or []}
        url = next((r.get("url") for r in c.get("externalReferences") or []
                    if r.get("type") == "distribution"), "")
        packages.append(SbomPackage(
            PIP if purl.type == "pypi" else CONDA, c.get("name", purl.name), c.get("version", ""),
            build=q.get("build", ""), subdir=q.get("subdir", ""), channel=q.get("channel", ""), url=url or "",
            sha256=hashes.get("SHA-256", "") or "", md5=hashes.get("MD5", "") or "",
            license=_license_text(c.get("licenses") or [])))
    created = (document.get("metadata") or {}).get("timestamp") or ""
    return SbomInfo(family=props.get("envmgr:family") or root.get("name", ""),
                    build_id=props.get("envmgr:build_id") or root.get("version", ""),
                    lock_digest=props.get("envmgr:lock_digest", ""), spec_hash=props.get("envmgr:spec_hash", ""),
                    platform=props.get("envmgr:platform", ""), created=created, packages=tuple(packages),
                    deleted=props.get("envmgr:deleted"))


def _license_text(licenses: list[dict[str, Any]]) -> str:
    for entry in licenses:
        if entry.get("expression"):
            return str(entry["expression"])
        lic = entry.get("license") or {}
        if lic.get("id") or lic.get("name"):
            return str(lic.get("id") or lic.get("name"))
    return ""


# -- `envmgr sbom` -------------------------------------------------------------------------------

@dataclass(frozen=True)
class SbomResult:
    record: BuildRecord
    fmt: str
    text: str
    generated: bool  # made from the record now (a build from before SBOMs)


def build_sbom(config: Any, family: str, ref: str | None, fmt: str = "cyclonedx-json",
               progress: Any = None) -> SbomResult:
    """The SBOM of one build of ``family`` (id, stable release name, or latest), tombstones too."""
    from envmgr.catalog.inventory import family_view
    from envmgr.errors import UsageError

    say = progress or (lambda _m: None)
    if fmt not in FORMATS:
        raise UsageError(f"--format {fmt!r} is not one of {', '.join(FORMATS)}")
    layout = config.layout
    if family not in layout.families():
        raise NotFound(f"no family '{family}' under {config.root}", hint="`envmgr status` lists the families")
    record = resolve_build(layout, family, ref, family_view(config, family).releases)
    if record.deleted:
        say(f"build {record.build_id} is a tombstone (its prefix was deleted {record.deleted})")
    text, generated = ensure_sbom(layout, record)
    if generated:
        say(f"build {record.build_id} had no SBOM; made it from its recorded lock")
    if fmt == "spdx-json":
        text = spdx_json(info_from_cyclonedx(json.loads(text)))
    return SbomResult(record, fmt, text, generated)
