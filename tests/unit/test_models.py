import pytest
import torch

from unlearnlib.models import MODELS, build_model, count_parameters

SHAPES = [(1, 8, 8), (1, 28, 28), (3, 32, 32)]  # digits, MNIST-like, CIFAR/SVHN-like


@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "x".join(map(str, s)))
@pytest.mark.parametrize("name", sorted(MODELS))
def test_output_shape_for_every_dataset_shape(name, shape):
    torch.manual_seed(0)
    model = build_model(name, shape, 10, width=0.25)
    out = model(torch.rand(3, *shape))
    assert out.shape == (3, 10)
    assert torch.isfinite(out).all()
    assert build_model(name, shape, 3, width=0.25)(torch.rand(2, *shape)).shape == (2, 3)


@pytest.mark.parametrize("name", sorted(MODELS))
def test_feature_layers_produce_spatial_maps(name):
    model = build_model(name, (1, 28, 28), 10, width=0.25)
    maps = []
    handles = [model.get_submodule(layer).register_forward_hook(lambda m, i, o: maps.append(o))
               for layer in model.feature_layers]
    model(torch.rand(2, 1, 28, 28))
    for h in handles:
        h.remove()
    assert len(maps) == len(model.feature_layers)
    assert all(m.dim() == 4 and m.shape[0] == 2 for m in maps)


def test_paper_layer_counts():
    # the zero-shot paper's attention transfer uses 8 AllCNN, 4 ResNet-9 and 2 LeNet maps
    assert len(MODELS["allcnn"].feature_layers) == 8
    assert len(MODELS["resnet9"].feature_layers) == 4
    assert len(MODELS["lenet5"].feature_layers) == 2


@pytest.mark.parametrize("name", ["lenet5", "sisa_cnn", "allcnn", "resnet9", "mlp"])
def test_width_multiplier_scales_parameters(name):
    full = count_parameters(build_model(name, (3, 32, 32), 10))
    quarter = count_parameters(build_model(name, (3, 32, 32), 10, width=0.25))
    assert quarter < full / 2


def test_known_sizes():
    # the SISA paper's MNIST network: 2 conv (32, 64) + FC 128 + FC 10
    assert count_parameters(build_model("sisa_cnn", (1, 28, 28), 10)) == 454_922
    assert count_parameters(build_model("lenet5", (1, 28, 28), 10)) == 61_706


def test_bad_arguments():
    with pytest.raises(ValueError, match="unknown model 'vgg'.*resnet9"):
        build_model("vgg", (1, 28, 28), 10)
    with pytest.raises(ValueError, match=r"input_shape must be \(channels, height, width\)"):
        build_model("mlp", (28, 28), 10)
    with pytest.raises(ValueError, match="num_classes must be at least 2"):
        build_model("mlp", (1, 28, 28), 1)
    with pytest.raises(ValueError, match="width must be positive"):
        build_model("allcnn", (1, 28, 28), 10, width=0)
