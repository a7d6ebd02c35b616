"""`archc predict`: the top-k classes of images from a trained
checkpoint or torchvision's weights."""

from __future__ import annotations

import argparse
import json

from archc.commands.common import add_format_option, add_spec_options, overrides_of, positive_int


def register(subparsers: argparse._SubParsersAction) -> None:
    predict = subparsers.add_parser(
        "predict",
        help="top-k classes of images, from a training checkpoint or torchvision's weights",
        description=(
            "Classify images with a trained run (--checkpoint best.pt: its class names, size "
            "and normalisation are recorded in it) or with torchvision's published ImageNet "
            "weights (--pretrained, for the zoo specs that reproduce a torchvision model)."
        ),
        epilog=(
            "examples: archc predict - --checkpoint runs/demo/best.pt "
            "digit.png; archc predict resnet18 --pretrained cat.jpg --format "
            "json; archc predict specs/lenet5.yaml --checkpoint best.pt FOLDER"
        ),
    )
    predict.add_argument(
        "spec",
        metavar="SPEC|NAME",
        help="spec file or zoo name (e.g. resnet18); with --checkpoint, "
        "'-' rebuilds the spec the checkpoint carries",
    )
    predict.add_argument(
        "images", nargs="+", metavar="IMAGE|DIR", help="image files, or folders of them"
    )
    source = predict.add_mutually_exclusive_group(required=True)
    source.add_argument(
        "--checkpoint", metavar="FILE", help="best.pt or last.pt of an archc training run"
    )
    source.add_argument(
        "--pretrained",
        action="store_true",
        help="torchvision's published weights for this zoo spec",
    )
    predict.add_argument(
        "--top-k",
        type=positive_int,
        default=5,
        metavar="K",
        help="classes shown per image (default 5)",
    )
    predict.add_argument("--device", choices=["auto", "cpu", "cuda", "mps"], default="auto")
    add_format_option(predict, ["table", "json"])
    add_spec_options(
        predict, limits=False
    )  # --set and --input default to those the checkpoint records
    predict.set_defaults(handler=run_predict)


def run_predict(args: argparse.Namespace) -> int:
    from archc.inference import predict

    results = predict(
        None if args.spec == "-" else args.spec,
        args.images,
        checkpoint=args.checkpoint,
        pretrained=args.pretrained,
        top_k=args.top_k,
        spec_overrides=overrides_of(args),
        input_shape=args.input_shape,
        plugins=tuple(args.plugins),
        device=args.device,
    )
    if args.format == "json":
        print(json.dumps([r.as_dict() for r in results], indent=2))
        return 0
    for result in results:
        print(result.image)
        for rank, (index, name, prob) in enumerate(result.top, 1):
            print(f"  {rank}. {name:<24} {prob:7.2%}  (class {index})")
    return 0
