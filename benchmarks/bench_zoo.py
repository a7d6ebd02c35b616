"""Compiling the whole zoo (what `archc zoo` does: every name, each family variant from its file)
with the loader's parse cache against parsing every file anew; and building torchvision's
classifiers from their compiled graphs (code generation and module construction) against
torchvision's own constructors, both on the meta device (no weight values, so construction is
what is timed).

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
    built, build_times = _build_times(names, rounds)
    result = {
        "names": len(names),
        "cached_s": median(times["cached"]),
        "uncached_s": median(times["uncached"]),
        "ratio_cached_over_uncached": ratio(times, "cached", "uncached"),
        "rounds": rounds,
    }
    print(
        f"  build {built} torchvision classifiers on meta: archc "
        f"{median(build_times['archc']):.2f} s, torchvision "
        f"{median(build_times['torchvision']):.2f} s"
    )
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
                {
                    "metric": f"build {built} torchvision classifiers on meta, archc / torchvision",
                    "value": round(ratio(build_times, "archc", "torchvision"), 2),
                    "unit": "x time",
                    "target": "(info)",
                },
                {
                    "metric": f"build {built} torchvision classifiers on meta (archc)",
                    "value": round(median(build_times["archc"]), 2),
                    "unit": "s",
                    "target": "",
                },
            ],
            "timing": {
                **result,
                "build_archc_s": median(build_times["archc"]),
                "build_torchvision_s": median(build_times["torchvision"]),
            },
        },
    )


def _build_times(names: list[str], rounds: int) -> tuple[int, dict[str, list[float]]]:
    """archc's build of each torchvision classifier in the zoo (its graph compiled beforehand)
    and torchvision's constructor of the same model, on the meta device; the few constructors
    that need real tensors (RegNet's width rule) are left out of both."""
    import warnings

    import torch
    import torchvision

    from archc import api

    warnings.filterwarnings("ignore", category=FutureWarning)  # inception's init_weights notice
    from archc.compiler.emit import build_module

    graphs = {}
    for name in sorted(set(names) & set(torchvision.models.list_models(torchvision.models))):
        try:
            with torch.device("meta"):
                torchvision.models.get_model(name)
        except Exception:  # a constructor that cannot run on meta is left out
            continue
        graphs[name] = api.compile_graph(name)

    def ours() -> None:
        with torch.device("meta"):
            for graph in graphs.values():
                build_module(graph, None)

    def theirs() -> None:
        with torch.device("meta"):
            for name in graphs:
                torchvision.models.get_model(name)

    return len(graphs), interleaved({"archc": ours, "torchvision": theirs}, rounds=rounds, warmup=1)


if __name__ == "__main__":
    main()
