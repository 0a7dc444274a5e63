#!/usr/bin/env python3
"""Export a torchvision model's pretrained weights for cutpoint.

cutpoint's zoo models use torchvision's module paths as node ids, so a torchvision
``state_dict`` saved as safetensors loads directly with ``--weights`` (Rust:
``models::load_safetensors``). BatchNorm's ``num_batches_tracked`` counters are dropped
here (cutpoint ignores them anyway) and every tensor is written as contiguous float32.

Usage::

    pip install torch torchvision safetensors
    python scripts/export_torchvision.py resnet18 resnet18.safetensors
    python scripts/export_torchvision.py googlenet googlenet.safetensors
    cutpoint-edge local --model resnet18 --weights resnet18.safetensors --image cat.jpg

Models: alexnet, vgg16, resnet18, resnet50, mobilenet_v2, googlenet (LeNet has no
torchvision weights). GoogLeNet is built with ``aux_logits=False`` and
``transform_input=False`` to match cutpoint's graph; the auxiliary classifiers'
weights are left out. Note that torchvision's pretrained GoogLeNet was trained with
``transform_input=True`` (a per-channel affine re-normalisation of the input), so
its top-1 accuracy on plainly ImageNet-normalised inputs is somewhat lower here. The script downloads the weights through torchvision's own
cache (``$TORCH_HOME``) on first use. No cutpoint test needs it.
"""

import argparse
import sys

MODELS = ("alexnet", "vgg16", "resnet18", "resnet50", "mobilenet_v2", "googlenet")


def build(name: str):
    """The pretrained torchvision model, in eval mode, shaped as cutpoint builds it."""
    import torchvision.models as tvm

    weights = tvm.get_model_weights(name).DEFAULT
    if name == "googlenet":
        # torchvision loads the checkpoint with its auxiliary heads and drops them again when
        # aux_logits is not asked for.
        return tvm.googlenet(weights=weights, transform_input=False).eval()
    return tvm.get_model(name, weights=weights).eval()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("model", choices=MODELS, help="torchvision model name")
    parser.add_argument("output", help="path of the .safetensors file to write")
    args = parser.parse_args()

    from safetensors.torch import save_file

    model = build(args.model)
    state = {
        key: tensor.detach().float().contiguous()
        for key, tensor in model.state_dict().items()
        if not key.endswith("num_batches_tracked")
    }
    save_file(state, args.output, metadata={"source": f"torchvision.models.{args.model}"})
    params = sum(p.numel() for p in model.parameters())
    print(f"wrote {len(state)} tensors ({params:,} parameters) to {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
