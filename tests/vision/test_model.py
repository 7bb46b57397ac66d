import pytest
import torch

from vision.model import ModelConfig, ScratchNet, images_to_tensor


@pytest.mark.parametrize("height,width", [(72, 128), (37, 53), (576, 1024)])
def test_any_input_size_gives_a_heatmap_at_one_eighth(height, width):
    model = ScratchNet().eval()
    with torch.no_grad():
        logits, image_logits = model(torch.zeros(2, 3, height, width))
    assert logits.shape == (2, 1, -(-height // 8), -(-width // 8))
    assert image_logits.shape == (2,)


def test_image_score_is_the_mean_of_the_top_cells():
    model = ScratchNet(ModelConfig(top_k=2)).eval()
    with torch.no_grad():
        logits, image_logits = model(torch.randn(1, 3, 64, 64))
    top = logits.flatten().topk(2).values.mean()
    assert torch.isclose(image_logits[0], top)


def test_images_are_padded_to_the_stride_with_their_edges():
    import numpy as np

    image = np.full((10, 13, 3), 200, dtype=np.uint8)
    batch = images_to_tensor([image], stride=8)
    assert batch.shape == (1, 3, 16, 16)
    # Padding repeats the edge: no dark border that could look like a defect edge.
    assert torch.allclose(batch[0, :, 15, 15], batch[0, :, 0, 0])
