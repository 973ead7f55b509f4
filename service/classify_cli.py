"""`hornet-classify`: classify image files with a running hornet-serve.

hornet-classify cat.jpg dog.png --model hornet-l-gf384 --url http://127.0.0.1:8000
hornet-classify photos/*.jpg --concurrency 8 --json > results.json
HORNET_API_KEY=hsk_... hornet-classify cat.jpg      # or --api-key-file: when the server requires a key
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys

from tqdm import tqdm

from service.client import API_KEY_ENV, DEFAULT_URL, AsyncHornetClient, HornetError


async def classify_all(args: argparse.Namespace) -> list[dict]:
    results: list[dict] = [{} for _ in args.files]
    gate = asyncio.Semaphore(args.concurrency)
    show_progress = len(args.files) > 1 and sys.stderr.isatty() or args.progress
    api_key = args.api_key_file.read().strip() if args.api_key_file else None
    async with AsyncHornetClient(args.url, max_connections=args.concurrency, api_key=api_key) as client:
        with tqdm(total=len(args.files), unit="img", disable=not show_progress, file=sys.stderr) as bar:

            async def one(i: int, path: str) -> None:
                async with gate:
                    try:
                        answer = await client.classify(path, model=args.model, top_k=args.top_k, shrink=args.shrink)
                        results[i] = {"file": path, **answer.model_dump()}
                    except HornetError as exc:
                        results[i] = {"file": path, "error": {"status": exc.status, "type": exc.type,
                                                              "message": exc.message}}  # fmt: skip
                    except (OSError, ValueError) as exc:  # unreadable file, unreachable server
                        results[i] = {"file": path, "error": {"status": None, "type": type(exc).__name__,
                                                              "message": str(exc)}}  # fmt: skip
                    bar.update(1)

            await asyncio.gather(*(one(i, path) for i, path in enumerate(args.files)))
    return results


def print_table(results: list[dict]) -> None:
    for result in results:
        if "error" in result:
            print(f"{result['file']}: error {result['error']['type']}: {result['error']['message']}")
            continue
        warning = "  (random weights: labels are meaningless)" if result["weights"] == "random-init" else ""
        print(f"{result['file']}  [{result['model']}]{warning}")
        for p in result["predictions"]:
            print(f"  {p['rank']}. {p['score']:7.2%}  {p['label'][:60]:60}  ({p['wnid'] or p['class_index']})")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="hornet-classify", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    p.add_argument("files", nargs="+")
    p.add_argument("--model", help="variant id or alias (default: the server's default)")
    p.add_argument("--url", default=DEFAULT_URL)
    p.add_argument("--top-k", type=int, default=5)
    p.add_argument("--api-key-file", type=argparse.FileType("r"),
                   help=f"a file holding the API key (default: ${API_KEY_ENV}; never pass a key as an argument)")  # fmt: skip
    p.add_argument("--concurrency", type=int, default=4)
    p.add_argument("--no-shrink", dest="shrink", action="store_false",
                   help="send photos as they are (default: big photos go up downscaled, see docs/http.md)")  # fmt: skip
    p.add_argument("--json", action="store_true", help="print one JSON document for scripts")
    p.add_argument("--progress", action="store_true", help="show the progress bar even when not on a terminal")
    args = p.parse_args(argv)
    results = asyncio.run(classify_all(args))
    if args.json:
        json.dump(results, sys.stdout, indent=2)
        sys.stdout.write("\n")
    else:
        print_table(results)
    return 1 if any("error" in r for r in results) else 0


if __name__ == "__main__":
    sys.exit(main())
