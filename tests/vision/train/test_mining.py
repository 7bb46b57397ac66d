"""vision.train.mining: which cells of one heatmap are mined as hard examples."""

import torch

from vision.train.mining import confusing_clean_cells, missed_defect_cells


def test_false_alarms_on_clean_surface_are_mined_but_a_defect_s_bleed_is_not():
    truth = torch.zeros(6, 6)
    truth[2, 2] = 1.0
    cells = torch.full((6, 6), -5.0)
    cells[2, 3] = 3.0  # beside the defect: its bleed, not a false alarm
    cells[5, 5] = 1.0  # clean surface the model fires on
    cells[0, 5] = -3.0  # clean and calm enough (p < 0.12)
    assert confusing_clean_cells(cells, truth) == [5 * 6 + 5]


def test_a_defect_is_missed_until_its_hottest_cell_passes_one_half():
    truth = torch.zeros(6, 6)
    truth[1, 1:3] = 1.0
    truth[4, 4] = 1.0
    cells = torch.full((6, 6), -5.0)
    cells[1, 2] = 2.0  # the first defect is found
    cells[4, 4] = -1.0  # the second is not
    assert missed_defect_cells(cells, truth) == [4 * 6 + 4]
