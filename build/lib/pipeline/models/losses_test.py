import math

import numpy as np
import pytest

from pipeline.models.losses import infonce_loss, vse_hinge_loss

I2 = np.eye(2, dtype="float32")


def test_infonce_by_hand():
    # logits = scale · I. Each row: -log(e^s / (e^s + e^0)) = log(1 + e^-s); both directions equal.
    assert float(infonce_loss(I2, I2, 1.0)) == pytest.approx(math.log(1 + math.exp(-1)), rel=1e-6)  # 0.31326
    assert float(infonce_loss(I2, I2, 2.0)) == pytest.approx(math.log(1 + math.exp(-2)), rel=1e-6)  # 0.12693


def test_infonce_duplicate_items_share_the_target():
    # ids [0, 0]: target (0.5, 0.5) per row. Row loss = -(0.5·(1 - log(1+e)) + 0.5·(-log(1+e))) = log(1+e) - 0.5
    expected = math.log(1 + math.e) - 0.5  # 0.81326
    assert float(infonce_loss(I2, I2, 1.0, ids=np.array([0, 0]))) == pytest.approx(expected, rel=1e-6)


def test_vse_hinge_by_hand():
    a = np.array([[1.0, 0.0], [0.6, 0.8]], "float32")
    b = np.array([[0.8, 0.6], [0.0, 1.0]], "float32")
    # s = a·bᵀ = [[0.8, 0.0], [0.96, 0.8]], diagonal 0.8.
    # a-anchors: row 0 max(0.2 + 0.0 - 0.8)+ = 0; row 1 (0.2 + 0.96 - 0.8)+ = 0.36
    # b-anchors: column 0 (0.2 + 0.96 - 0.8)+ = 0.36; column 1 (0.2 + 0.0 - 0.8)+ = 0
    # loss = mean([0 + 0.36, 0.36 + 0]) = 0.36
    assert float(vse_hinge_loss(a, b, 0.2)) == pytest.approx(0.36, abs=1e-6)
    assert float(vse_hinge_loss(I2, I2, 0.2)) == 0.0  # every negative is 1 below its positive


def test_vse_sum_of_violations_by_hand():
    a = np.array([[1.0, 0.0], [0.0, 1.0], [0.6, 0.8]], "float32")
    # s = a·aᵀ = [[1, 0, 0.6], [0, 1, 0.8], [0.6, 0.8, 1]], diagonal 1; margin 0.5.
    # Violations (0.5 + s_ij - 1)+ off the diagonal: (0,2) 0.1, (1,2) 0.3, (2,0) 0.1, (2,1) 0.3; the rest 0.
    # Rows (a anchors): sums 0.1, 0.3, 0.4; columns (b anchors): the same by symmetry.
    # sum version: mean(0.2, 0.6, 0.8) = 0.5333; max version: rows 0.1, 0.3, 0.3 → mean(0.2, 0.6, 0.6) = 0.4667
    assert float(vse_hinge_loss(a, a, 0.5, hardest=False)) == pytest.approx(1.6 / 3, abs=1e-6)
    assert float(vse_hinge_loss(a, a, 0.5)) == pytest.approx(1.4 / 3, abs=1e-6)


def test_infonce_class_positives_by_hand():
    # a = b = [e0, e0, e1] (unit vectors), scale 1, ids [7, 7, 9]: rows 0 and 1 are one class.
    # Row 0's logits: [1, 1, 0]; target [1/2, 1/2, 0]; log_softmax = [1, 1, 0] - log(2e + 1).
    # Cross-entropy row 0 = row 1 = log(2e + 1) - 1. Row 2's logits: [0, 0, 1], target [0, 0, 1]:
    # log(2 + e) - 1. Both directions are the same here (a = b, symmetric), so
    # loss = (2 (log(2e + 1) - 1) + log(2 + e) - 1) / 3.
    e0, e1 = [1.0, 0.0], [0.0, 1.0]
    a = np.array([e0, e0, e1], "float32")
    expected = (2 * (np.log(2 * np.e + 1) - 1) + np.log(2 + np.e) - 1) / 3
    assert float(infonce_loss(a, a, 1.0, np.array([7, 7, 9]))) == pytest.approx(expected, rel=1e-6)
