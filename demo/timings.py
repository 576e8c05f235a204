"""The demo's speed as a user meets it, in milliseconds (median of the repeats): from the command to the page
ready (its files, /api/info and the first two-views answer), until the corpus is indexed, a two-views update
of the page's 8 sentences, the dropout curve beside it, and a search of the index.

    python demo/timings.py --corpus-from ../shared/data/wiki/wiki1m_head.txt --sentences 10000

The first --sentences lines of --corpus-from are the corpus; other arguments go to demo.py (--model, ...).
"""
import argparse
import statistics
import tempfile
import time
from pathlib import Path

import drive
from drive import Client

EIGHT = ["A man is playing a guitar.", "A man plays the guitar on stage.", "A woman is slicing an onion.",
         "Someone is cutting an onion in a kitchen.", "The stock market fell sharply today.",
         "Share prices dropped on Monday.", "A man is not playing a guitar.",
         "The cat sleeps on a warm windowsill."]  # the page's batch
QUERIES = ["A man is playing a guitar.", "The history of the city", "A famous football player",
           "Rivers of Europe", "He was elected to parliament.", "The album was released in 1999."]


def ms(seconds):
    return round(1000 * statistics.median(seconds))


def timed(call):
    start = time.perf_counter()
    status, answer = call()
    assert status == 200, answer
    return time.perf_counter() - start


def main():
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--corpus-from", type=Path, required=True)
    parser.add_argument("--sentences", type=int, default=10000)
    parser.add_argument("--starts", type=int, default=3, help="starts of demo.py timed (default 3)")
    parser.add_argument("--repeats", type=int, default=20, help="requests of each kind timed (default 20)")
    args, demo_args = parser.parse_known_args()
    lines = [s for s in args.corpus_from.read_text().splitlines() if s.strip()][:args.sentences]
    corpus = tempfile.NamedTemporaryFile("w", suffix=".txt", delete=False)
    corpus.write("\n".join(lines) + "\n")
    corpus.close()
    views = {"sentences": EIGHT, "p": 0.1, "temp": 0.05}
    ready, indexed, printed = [], [], []
    for _ in range(args.starts):
        start = time.perf_counter()
        process, url, seconds = drive.start_demo("--corpus", corpus.name, *demo_args)
        client = Client(url)
        try:
            printed.append(seconds)
            for path in ("/", "/demo.js", "/demo.css", "/api/info"):
                assert client.raw("GET", path)[0] == 200
            assert client.post("/api/views", views)[0] == 200
            ready.append(time.perf_counter() - start)
            while client.get("/api/info")[1]["models"]["A"]["indexed"] < len(lines):
                time.sleep(0.05)
            indexed.append(time.perf_counter() - start)
            if len(indexed) == args.starts:  # the last server, idle now: the requests of a class
                info = client.get("/api/info")[1]["models"]["A"]
                update = [timed(lambda: client.post("/api/views", {**views, "seed": i}))
                          for i in range(args.repeats)]
                curve = [timed(lambda: client.post("/api/dropout-curve", {**views, "seed": i}))
                         for i in range(max(3, args.repeats // 4))]
                search = [timed(lambda: client.post("/api/search", {"query": QUERIES[i % len(QUERIES)],
                                                                    "top_k": 5, "threshold": 0.5}))
                          for i in range(args.repeats)]
        finally:
            drive.stop(process)
    print(f"model {info['path']} ({info['layers']} layers, {info['hidden']} wide, {info['pooler']}), "
          f"corpus {len(lines)} sentences of {args.corpus_from}")
    print(f"command to URL printed: {ms(printed)} ms; to page ready (files, /api/info, first two views): "
          f"{ms(ready)} ms; to the corpus indexed: {ms(indexed)} ms (median of {args.starts} starts)")
    print(f"two-views update, 8 sentences: {ms(update)} ms; dropout curve (8 values of p): {ms(curve)} ms; "
          f"search of {len(lines)} sentences: {ms(search)} ms (medians of {args.repeats}, "
          f"{len(curve)} for the curve)")


if __name__ == "__main__":
    main()
