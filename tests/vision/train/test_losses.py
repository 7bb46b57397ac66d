"""vision.train.losses: box bags and coarse-mask bags reward the right cells."""

import torch

from vision.train.losses import box_bag_loss, mask_bag_loss


def test_box_loss_rewards_a_hot_cell_inside_the_box_and_cold_cells_outside():
    box = [(8, 8, 24, 24)]  # cells 1..2 in each direction at stride 8
    cold = torch.full((1, 6, 6), -5.0)
    hot_inside = cold.clone()
    hot_inside[0, 2, 2] = 5.0
    hot_outside = cold.clone()
    hot_outside[0, 5, 5] = 5.0
    assert box_bag_loss(hot_inside, box, 8)[0] < box_bag_loss(cold, box, 8)[0]
    assert box_bag_loss(hot_inside, box, 8)[0] < box_bag_loss(hot_outside, box, 8)[0]


def test_a_coarse_mask_trains_as_a_bag_not_cell_by_cell():
    """Area masks (a whole uneven patch) outline a region; only some cell inside must fire."""
    truth = torch.zeros(1, 1, 8, 8)
    truth[0, 0, :4, :] = 1.0
    one_hot_cell = torch.full((1, 1, 8, 8), -5.0)
    one_hot_cell[0, 0, 1, 1] = 5.0  # a single confident cell inside is enough
    all_cold = torch.full((1, 1, 8, 8), -5.0)
    fires_outside = all_cold.clone()
    fires_outside[0, 0, 7, 7] = 5.0
    assert mask_bag_loss(one_hot_cell, truth) < 0.05
    assert mask_bag_loss(one_hot_cell, truth) < mask_bag_loss(all_cold, truth)
    assert mask_bag_loss(fires_outside, truth) > mask_bag_loss(all_cold, truth)
