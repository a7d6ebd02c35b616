"""Compiling the whole zoo (what `archc zoo` does: every name, each family variant from its file)
with the loader's parse cache against parsing every file anew.

    python benchmarks/bench_zoo.py [--quick]

A family spec (resnet.yaml's five depths, efficientnet.yaml's eight) is read once per variant;
the loader keeps the parsed trees of recent small texts, so a family is parsed once. The
reference clears that cache before every name, which is what the loader did before it had one.
Median of interleaved rounds; each round compiles every name once, starting from an empty cache.
"""

from __future__ import annotations

import argparse

from common import interleaved, median, ratio, write_result


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="3 rounds instead of 9")
    args = parser.parse_args()

    from archc import api, zoo
    from archc.compiler import loader

    names = zoo.names()

    def cached() -> None:
        loader.clear_parse_cache()  # every round starts cold, as a fresh `archc zoo`
        for name in names:
            api.compile_graph(name)

    def uncached() -> None:
        for name in names:
            loader.clear_parse_cache()
            api.compile_graph(name)

    rounds = 3 if args.quick else 9
    times = interleaved({"cached": cached, "uncached": uncached}, rounds=rounds, warmup=1)
    result = {
        "names": len(names),
        "cached_s": median(times["cached"]),
        "uncached_s": median(times["uncached"]),
        "ratio_cached_over_uncached": ratio(times, "cached", "uncached"),
        "rounds": rounds,
    }
    print(
        f"  {len(names)} zoo names: {result['cached_s']:.2f} s with the parse cache, "
        f"{result['uncached_s']:.2f} s parsing each file anew "
        f"(ratio {result['ratio_cached_over_uncached']:.3f})"
    )
    write_result(
        "zoo",
        {
            "command": f"python benchmarks/bench_zoo.py {'--quick' if args.quick else ''}".strip(),
            "summary": [
                {
                    "metric": f"compile all {len(names)} zoo names, parse cache / parse each file",
                    "value": round(result["ratio_cached_over_uncached"], 3),
                    "unit": "x time",
                    "target": "< 1",
                },
                {
                    "metric": f"compile all {len(names)} zoo names (archc zoo's work)",
                    "value": round(result["cached_s"], 2),
                    "unit": "s",
                    "target": "",
                },
            ],
            "timing": result,
        },
    )


if __name__ == "__main__":
    main()
