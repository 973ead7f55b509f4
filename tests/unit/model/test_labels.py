import pytest

from model import labels


def test_imagenet_1k_order_and_names():
    s = labels.for_head(1000)
    assert s.name == "imagenet-1k" and len(s) == 1000
    assert (s[0].wnid, s[0].index) == ("n01440764", 0)
    assert s[0].name.startswith("tench")
    assert s[999].wnid == "n15075141"


def test_hornet_22k_is_the_miil_list_plus_nine_1k_classes():
    s = labels.for_head(10459)
    assert s.name == "hornet-22k" and len(s) == 10459
    assert s[10449].wnid != "n02085782" and s[10450].wnid == "n02085782" and s[10458].wnid == "n04399382"
    assert len({label.wnid for label in s.labels}) == 10459
    # Every ImageNet-1k class exists in the 22k head (the official in1k_to_21k map relies on it).
    assert {label.wnid for label in labels.imagenet_1k().labels} <= {label.wnid for label in s.labels}
    assert all(label.name != label.wnid for label in s.labels)


def test_imagenet_21k_fall11():
    s = labels.for_head(21841)
    assert s.name == "imagenet-21k" and len(s) == 21841 and s[0].wnid == "n00004475"
    assert s[0].name == "organism, being"


def test_other_head_sizes_get_generic_names_and_a_warning():
    with pytest.warns(UserWarning, match="37 classes"):
        s = labels.for_head(37)
    assert s.name == "generic" and s[36].name == "class_36" and s[36].wnid is None


def test_operator_labels_file_overrides(tmp_path):
    path = tmp_path / "labels.txt"
    path.write_text("n000001\tcat\nn000002\tdog\nbird\n")
    s = labels.for_head(3, labels_file=path)
    assert [(x.wnid, x.name) for x in s.labels] == [("n000001", "cat"), ("n000002", "dog"), (None, "bird")]
    with pytest.raises(ValueError, match="has 3 lines, the head has 1000"):
        labels.for_head(1000, labels_file=path)
