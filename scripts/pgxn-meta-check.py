#!/usr/bin/env python3
"""Checks META.json against the PGXN Meta Spec 1.0.0 (https://pgxn.org/spec/): its required fields and the
types of every field it uses; then against this project: its version is Cargo.toml's, the one extension
it provides is orch_lease at that version, its files are in git, it needs PostgreSQL 14 or newer.
    pgxn-meta-check.py META.json CARGO_TOML   prints "ok" or every problem, and fails on a problem
    pgxn-meta-check.py --self-test META.json CARGO_TOML   also checks that broken copies are refused"""
import copy
import json
import re
import subprocess
import sys

LICENSES = {"agpl_3", "apache_1_1", "apache_2_0", "artistic_1", "artistic_2", "bsd", "freebsd", "gfdl_1_2",
            "gfdl_1_3", "gpl_1", "gpl_2", "gpl_3", "lgpl_2_1", "lgpl_3_0", "mit", "mozilla_1_0", "mozilla_1_1",
            "openssl", "perl_5", "postgresql", "qpl_1_0", "ssleay", "sun", "zlib", "open_source", "restricted",
            "unrestricted", "unknown"}
SEMVER = re.compile(r"^(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)(-[0-9A-Za-z-]+(\.[0-9A-Za-z-]+)*)?$")
URI = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*:\S+$")
EMAIL = re.compile(r"^[^@\s]+@[^@\s]+$")
PHASES = {"configure", "build", "test", "runtime", "develop"}
RELATIONS = {"requires", "recommends", "suggests", "conflicts"}
VERSION_RANGE = re.compile(r"^\s*(0|(([<>]=?|==|!=)\s*)?\d+\.\d+\.\d+\S*)(\s*,\s*([<>]=?|==|!=)\s*\d+\.\d+\.\d+\S*)*\s*$")


def is_term(value):
    """A Term: a string of at least two characters, no slash, backslash, control or space characters."""
    return isinstance(value, str) and len(value) >= 2 and not re.search(r"[/\\\s\x00-\x1f\x7f]", value)


def is_tag(value):
    return isinstance(value, str) and 0 < len(value) <= 255 and not re.search(r"[/\\\x00-\x1f\x7f]", value)


def strings(value):
    return isinstance(value, list) and len(value) > 0 and all(isinstance(v, str) and v for v in value)


def spec_problems(meta):
    """What META breaks of the PGXN Meta Spec 1.0.0."""
    p = []
    if not isinstance(meta, dict):
        return ["META.json is not an object"]
    for field in ("name", "version", "abstract", "maintainer", "license", "provides", "meta-spec"):
        if field not in meta:
            p.append(f"required field {field} is missing")
    if "name" in meta and not is_term(meta["name"]):
        p.append("name is not a Term (2+ characters, no slash, backslash, space or control character)")
    if "version" in meta and not (isinstance(meta["version"], str) and SEMVER.match(meta["version"])):
        p.append(f"version {meta['version']!r} is not a semantic version (X.Y.Z)")
    for field in ("abstract", "description", "generated_by"):
        if field in meta and not (isinstance(meta[field], str) and meta[field].strip()):
            p.append(f"{field} is not a non-empty string")
    if "maintainer" in meta and not (isinstance(meta["maintainer"], str) and meta["maintainer"]
                                     or strings(meta["maintainer"])):
        p.append("maintainer is neither a string nor a list of strings")
    if "license" in meta:
        lic = meta["license"]
        ok = (isinstance(lic, str) and lic in LICENSES
              or isinstance(lic, list) and lic and all(isinstance(v, str) and v in LICENSES for v in lic)
              or isinstance(lic, dict) and lic and all(isinstance(u, str) and URI.match(u) for u in lic.values()))
        if not ok:
            p.append(f"license {lic!r} is none of the spec's license strings (e.g. apache_2_0), nor a name -> URL map")
    if "provides" in meta:
        prov = meta["provides"]
        if not (isinstance(prov, dict) and prov):
            p.append("provides is not a non-empty object")
        else:
            for ext, info in prov.items():
                if not is_term(ext):
                    p.append(f"provides: {ext!r} is not a Term")
                if not isinstance(info, dict):
                    p.append(f"provides.{ext} is not an object")
                    continue
                for field in ("file", "version"):
                    if field not in info:
                        p.append(f"provides.{ext}.{field} is missing")
                for field in ("file", "docfile", "abstract"):
                    if field in info and not (isinstance(info[field], str) and info[field]):
                        p.append(f"provides.{ext}.{field} is not a non-empty string")
                if "version" in info and not (isinstance(info["version"], str) and SEMVER.match(info["version"])):
                    p.append(f"provides.{ext}.version is not a semantic version")
                for field in set(info) - {"file", "docfile", "abstract", "version"}:
                    if not field.startswith("x_") and not field.startswith("X_"):
                        p.append(f"provides.{ext}.{field} is not a field of the spec")
    if "meta-spec" in meta:
        ms = meta["meta-spec"]
        if not isinstance(ms, dict) or ms.get("version") != "1.0.0":
            p.append("meta-spec.version is not 1.0.0")
        elif "url" in ms and not (isinstance(ms["url"], str) and URI.match(ms["url"])):
            p.append("meta-spec.url is not a URI")
    if "tags" in meta and not (isinstance(meta["tags"], list) and meta["tags"] and all(is_tag(t) for t in meta["tags"])):
        p.append("tags is not a list of tags (strings up to 255 characters, no slash, backslash or control character)")
    if "release_status" in meta and meta["release_status"] not in ("stable", "testing", "unstable"):
        p.append("release_status is not stable, testing or unstable")
    if "no_index" in meta:
        ni = meta["no_index"]
        if not (isinstance(ni, dict) and set(ni) <= {"file", "directory"} and all(strings(v) for v in ni.values())):
            p.append("no_index is not {file: [...], directory: [...]}")
    if "prereqs" in meta:
        pr = meta["prereqs"]
        if not isinstance(pr, dict):
            p.append("prereqs is not an object")
        else:
            for phase, rels in pr.items():
                if phase not in PHASES or not isinstance(rels, dict):
                    p.append(f"prereqs.{phase} is not a phase ({', '.join(sorted(PHASES))}) with an object")
                    continue
                for rel, deps in rels.items():
                    if rel not in RELATIONS or not isinstance(deps, dict):
                        p.append(f"prereqs.{phase}.{rel} is not a relationship with an object")
                        continue
                    for name, rng in deps.items():
                        if not (is_term(name) and isinstance(rng, str) and VERSION_RANGE.match(rng)):
                            p.append(f"prereqs.{phase}.{rel}.{name}: {rng!r} is not a version range")
    if "resources" in meta:
        res = meta["resources"]
        if not isinstance(res, dict):
            p.append("resources is not an object")
        else:
            if "homepage" in res and not (isinstance(res["homepage"], str) and URI.match(res["homepage"])):
                p.append("resources.homepage is not a URI")
            bt = res.get("bugtracker", {})
            if not isinstance(bt, dict) or not set(bt) <= {"web", "mailto"} or "bugtracker" in res and not bt:
                p.append("resources.bugtracker is not {web, mailto}")
            elif ("web" in bt and not URI.match(str(bt["web"]))) or ("mailto" in bt and not EMAIL.match(str(bt["mailto"]))):
                p.append("resources.bugtracker: web is not a URI or mailto not an address")
            repo = res.get("repository", {})
            if not isinstance(repo, dict) or not set(repo) <= {"url", "web", "type"}:
                p.append("resources.repository is not {url, web, type}")
            elif any(k in repo and not URI.match(str(repo[k])) for k in ("url", "web")):
                p.append("resources.repository: url or web is not a URI")
    return p


def project_problems(meta, cargo_version):
    p = []
    if meta.get("name") != "orch_lease":
        p.append("name is not orch_lease")
    if meta.get("version") != cargo_version:
        p.append(f"version {meta.get('version')} is not Cargo.toml's {cargo_version}")
    if meta.get("license") != "apache_2_0":
        p.append("license is not apache_2_0 (Cargo.toml: Apache-2.0)")
    prov = meta.get("provides", {}).get("orch_lease") if isinstance(meta.get("provides"), dict) else None
    if not isinstance(prov, dict) or prov.get("version") != cargo_version:
        p.append(f"provides.orch_lease.version is not {cargo_version}")
    else:
        tracked = set(subprocess.run(["git", "ls-files"], capture_output=True, text=True, check=True).stdout.split())
        for field in ("file", "docfile"):
            if prov.get(field) not in tracked:
                p.append(f"provides.orch_lease.{field} {prov.get(field)!r} is not a file in git")
    try:
        floor = meta["prereqs"]["runtime"]["requires"]["PostgreSQL"]
        if tuple(int(x) for x in floor.split(".")[:3]) != (14, 0, 0):
            p.append(f"prereqs: PostgreSQL {floor}, not 14.0.0 (the oldest major tested)")
    except (KeyError, TypeError, ValueError):
        p.append("prereqs.runtime.requires.PostgreSQL is missing")
    for field in ("tags", "abstract"):
        if field not in meta:
            p.append(f"{field} is missing")
    return p


def main():
    args = sys.argv[1:]
    self_test = args[:1] == ["--self-test"]
    if self_test:
        args = args[1:]
    meta_path, cargo_path = args
    meta = json.load(open(meta_path))
    cargo_version = re.search(r'^version = "([^"]+)"', open(cargo_path).read(), re.M).group(1)
    problems = spec_problems(meta) + project_problems(meta, cargo_version)
    for problem in problems:
        print(f"META.json: {problem}")
    if problems:
        sys.exit(1)
    checks = 1
    if self_test:
        def broken(change):
            m = copy.deepcopy(meta)
            change(m)
            return m
        cases = {
            "no name": broken(lambda m: m.pop("name")),
            "no maintainer": broken(lambda m: m.pop("maintainer")),
            "no meta-spec": broken(lambda m: m.pop("meta-spec")),
            "name with a slash": broken(lambda m: m.update(name="orch/lease")),
            "license Apache-2.0": broken(lambda m: m.update(license="Apache-2.0")),
            "version 0.4": broken(lambda m: m.update(version="0.4")),
            "maintainer a number": broken(lambda m: m.update(maintainer=7)),
            "provides without file": broken(lambda m: m["provides"]["orch_lease"].pop("file")),
            "provides version not semver": broken(lambda m: m["provides"]["orch_lease"].update(version="4")),
            "meta-spec 2.0.0": broken(lambda m: m["meta-spec"].update(version="2.0.0")),
            "tags a string": broken(lambda m: m.update(tags="workflow")),
            "prereqs phase unknown": broken(lambda m: m["prereqs"].update(install={"requires": {}})),
            "release_status final": broken(lambda m: m.update(release_status="final")),
        }
        for what, case in cases.items():
            if not spec_problems(case):
                print(f"META.json check: a META.json with {what} passed the spec check")
                sys.exit(1)
        project_cases = {
            "another version": broken(lambda m: m.update(version="9.9.9")),
            "PostgreSQL 13": broken(lambda m: m["prereqs"]["runtime"]["requires"].update(PostgreSQL="13.0.0")),
            "a docfile not in git": broken(lambda m: m["provides"]["orch_lease"].update(docfile="docs/none.md")),
        }
        for what, case in project_cases.items():
            if not project_problems(case, cargo_version):
                print(f"META.json check: a META.json with {what} passed the project check")
                sys.exit(1)
        checks += len(cases) + len(project_cases)
    print(f"META.json: PGXN Meta Spec 1.0.0 and version {cargo_version} ok ({checks} checks)")


main()
