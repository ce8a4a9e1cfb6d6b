"""Download, verify and prepare the files listed in models/manifest.toml.
Files committed under models/ (registry "repo") are verified and copied.

Run through models/fetch, which sets up the virtual environment the preparation steps
need. Layout of the cache (default ~/.cache/facegate, or $FACEGATE_CACHE):
    downloads/<sha256>/<file>   a package exactly as its registry client saved it
    prepared/<sha256>           output of a preparation step other than copy
Files installed as shipped are not kept twice: they come straight out of the download.
"""

import argparse
import hashlib
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import tomllib
import zipfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
GROUPS = ("core", "cuda", "openvino", "heldout")


class FetchError(Exception):
    pass


def sha256_of(path):
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def check_digest(what, expected, actual):
    if actual != expected:
        raise FetchError(f"sha256 mismatch for {what}: expected {expected}, got {actual}")


def load_manifest(path):
    with open(path, "rb") as f:
        manifest = tomllib.load(f)
    packages = {p["id"]: p for p in manifest["package"]}
    for p in packages.values():
        if p["registry"] not in ("pypi", "npm", "repo"):
            raise FetchError(f"package {p['id']}: unknown registry {p['registry']!r}")
    outputs = set()
    for a in manifest["artifact"]:
        where = f"artifact {a['name']}"
        if a["package"] not in packages:
            raise FetchError(f"{where}: unknown package {a['package']!r}")
        if a["group"] not in GROUPS:
            raise FetchError(f"{where}: unknown group {a['group']!r}")
        if a["prepare"] == "copy" and a["prepared_sha256"] != a["sha256"]:
            raise FetchError(f"{where}: a copy must have prepared_sha256 equal to sha256")
        if packages[a["package"]]["registry"] == "repo" and (
                a["prepare"] != "copy" or Path(a["path"]).is_absolute() or ".." in Path(a["path"]).parts):
            raise FetchError(f"{where}: a repo artifact is copied from a path under models/")
        if a["output"] in outputs or Path(a["output"]).is_absolute() or ".." in Path(a["output"]).parts:
            raise FetchError(f"{where}: output {a['output']!r} is repeated or leaves the destination")
        outputs.add(a["output"])
    return packages, manifest["artifact"]


def run_client(package, command, cwd):
    result = subprocess.run(command, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    if result.returncode != 0:
        client = "npm pack" if package["registry"] == "npm" else "pip download"
        raise FetchError(f"{client} {package['name']} {package['version']} failed "
                         f"(exit {result.returncode}):\n{result.stderr.strip()}")


def download_command(package, into):
    spec = f"{package['name']}=={package['version']}"
    if package["registry"] == "npm":
        return ["npm", "pack", f"{package['name']}@{package['version']}",
                "--pack-destination", str(into), "--ignore-scripts", "--loglevel=error"]
    command = [sys.executable, "-m", "pip", "download", spec, "--no-deps", "--dest", str(into),
               "--quiet", "--disable-pip-version-check"]
    if package["file"].endswith(".whl"):
        command.append("--only-binary=:all:")
        if "platform" in package:
            # Pick the wheel for the target, whatever Python runs this script.
            command += ["--platform", package["platform"], "--python-version", package["python"],
                        "--implementation", "cp", "--abi", package["abi"]]
    else:
        command.append("--no-binary=:all:")
    return command


def ensure_download(package, cache):
    """Path of the verified package file in the cache, downloading it first if needed."""
    slot = cache / "downloads" / package["sha256"] / package["file"]
    if slot.exists():
        check_digest(f"{slot} (delete it to download again)", package["sha256"], sha256_of(slot))
        return slot
    print(f"fetch: downloading {package['name']} {package['version']} ({package['registry']})", flush=True)
    (cache / "downloads").mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=cache / "downloads", prefix=".tmp-") as tmp:
        run_client(package, download_command(package, tmp), cwd=tmp)
        produced = Path(tmp) / package["file"]
        if not produced.exists():
            got = ", ".join(sorted(os.listdir(tmp))) or "nothing"
            raise FetchError(f"{package['id']}: expected {package['file']}, the client produced {got}")
        check_digest(f"downloaded {package['file']}", package["sha256"], sha256_of(produced))
        slot.parent.mkdir(exist_ok=True)
        os.replace(produced, slot)
    return slot


def extract_members(archive, members, into):
    """Write the named members of a wheel, sdist or npm tarball into `into`, one pass."""
    found = {}
    if archive.name.endswith(".whl"):
        with zipfile.ZipFile(archive) as z:
            for name in members:
                target = into / f"{len(found)}"
                with z.open(name) as src, open(target, "wb") as dst:
                    shutil.copyfileobj(src, dst, 1 << 20)
                found[name] = target
    else:
        with tarfile.open(archive, "r:gz") as t:
            # Streamed in order: random access into a gzip stream would re-read it per member.
            for info in t:
                if info.name in members and info.isfile() and info.name not in found:
                    target = into / f"{len(found)}"
                    with t.extractfile(info) as src, open(target, "wb") as dst:
                        shutil.copyfileobj(src, dst, 1 << 20)
                    found[info.name] = target
    missing = set(members) - set(found)
    if missing:
        raise FetchError(f"{archive.name} has no {', '.join(sorted(missing))}")
    return found


def from_checkout(artifacts, dest):
    """Install artifacts committed in this repository: verified, then copied."""
    for a in artifacts:
        source = HERE / a["path"]
        if not source.is_file():
            raise FetchError(f"{source} is missing from the checkout")
        check_digest(str(source), a["sha256"], sha256_of(source))
        install(source, dest / a["output"], move=False)


def install(source, target, move):
    """Put a verified file in place atomically, so a dest file is either old or complete."""
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.tmp")
    if move:
        shutil.move(source, tmp)
    else:
        shutil.copyfile(source, tmp)
    os.chmod(tmp, 0o644)
    os.replace(tmp, target)


def prepare_bytes(step, data):
    # Imported only here: onnx and numpy cost time and a run with nothing to prepare skips them.
    sys.dont_write_bytecode = True  # keep __pycache__ out of the checkout
    sys.path.insert(0, str(HERE))
    import prepare
    return prepare.prepare(step, data)


def fetch(packages, artifacts, dest, cache):
    counts = {"downloaded": 0, "prepared": 0, "installed": 0}
    todo = []
    for a in artifacts:
        target = dest / a["output"]
        if target.exists() and sha256_of(target) == a["prepared_sha256"]:
            continue
        if target.exists():
            print(f"fetch: replacing {target} (digest differs)")
        todo.append(a)
    if not todo:
        return counts

    # Prepared outputs already in the cache need no download at all.
    needed = []
    for a in todo:
        cached = cache / "prepared" / a["prepared_sha256"]
        if a["prepare"] != "copy" and cached.exists():
            check_digest(f"{cached} (delete it to prepare again)", a["prepared_sha256"], sha256_of(cached))
            install(cached, dest / a["output"], move=False)
            counts["installed"] += 1
        else:
            needed.append(a)

    dest.mkdir(parents=True, exist_ok=True)
    by_package = {}
    for a in needed:
        by_package.setdefault(a["package"], []).append(a)
    for package_id, wanted in by_package.items():
        package = packages[package_id]
        if package["registry"] == "repo":
            from_checkout(wanted, dest)
            counts["installed"] += len(wanted)
            continue
        slot = cache / "downloads" / package["sha256"] / package["file"]
        counts["downloaded"] += not slot.exists()
        archive = ensure_download(package, cache)
        with tempfile.TemporaryDirectory(dir=dest, prefix=".fetch-") as tmp:
            staged = extract_members(archive, [a["path"] for a in wanted], Path(tmp))
            for a in wanted:
                shipped = staged[a["path"]]
                check_digest(f"{package['file']}:{a['path']}", a["sha256"], sha256_of(shipped))
                if a["prepare"] == "copy":
                    install(shipped, dest / a["output"], move=True)
                    counts["installed"] += 1
                    continue
                print(f"fetch: preparing {a['output']} ({a['prepare']})", flush=True)
                data = prepare_bytes(a["prepare"], shipped.read_bytes())
                actual = hashlib.sha256(data).hexdigest()
                check_digest(f"{a['output']} as prepared by {a['prepare']}", a["prepared_sha256"], actual)
                cached = cache / "prepared" / actual
                cached.parent.mkdir(parents=True, exist_ok=True)
                tmp_cached = cached.with_name(f".{actual}.tmp")
                tmp_cached.write_bytes(data)
                os.replace(tmp_cached, cached)
                install(cached, dest / a["output"], move=False)
                counts["prepared"] += 1
                counts["installed"] += 1
    return counts


def main():
    parser = argparse.ArgumentParser(prog="models/fetch", description=__doc__.splitlines()[0])
    parser.add_argument("--dest", type=Path, default=HERE / "prepared",
                        help="where the files go (default: models/prepared in this checkout)")
    parser.add_argument("--cache", type=Path,
                        default=Path(os.environ.get("FACEGATE_CACHE") or Path.home() / ".cache/facegate"),
                        help="downloads and prepared files (default: $FACEGATE_CACHE or ~/.cache/facegate)")
    parser.add_argument("--cuda", action="store_true", help="also ONNX Runtime with the CUDA provider")
    parser.add_argument("--openvino", action="store_true",
                        help="also ONNX Runtime with the OpenVINO provider (Intel CPUs; 84 MB download)")
    parser.add_argument("--heldout", action="store_true", help="also the held-out photos")
    parser.add_argument("--manifest", type=Path, default=HERE / "manifest.toml", help=argparse.SUPPRESS)
    args = parser.parse_args()

    groups = {"core"} | {g for g in ("cuda", "openvino", "heldout") if getattr(args, g)}
    try:
        packages, artifacts = load_manifest(args.manifest)
        artifacts = [a for a in artifacts if a["group"] in groups]
        counts = fetch(packages, artifacts, args.dest, args.cache)
    except (FetchError, OSError) as e:
        print(f"fetch: error: {e}", file=sys.stderr)
        return 1
    if not any(counts.values()):
        print(f"fetch: up to date, {len(artifacts)} files verified in {args.dest}")
    else:
        print(f"fetch: done, {counts['installed']} files installed in {args.dest} "
              f"({counts['downloaded']} downloads, {counts['prepared']} prepared), "
              f"{len(artifacts)} files verified in all")
    return 0


if __name__ == "__main__":
    sys.exit(main())
