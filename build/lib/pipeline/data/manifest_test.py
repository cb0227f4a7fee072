import pandas as pd
import pytest

from pipeline.data.manifest import Manifest, ManifestError, check_columns, read_table, row_problems


def make(frame_dict, root="/data"):
    return Manifest(root=root, frame=pd.DataFrame(frame_dict), format="manifest")


def test_defaults_filled_in():
    m = make({"text": ["a dog", "a cat"], "split": ["val", ""]})
    assert list(m.frame.columns[:6]) == ["item_id", "split", "text", "image", "audio", "label"]
    assert m.frame["split"].tolist() == ["dev", "unassigned"]  # alias, then default
    assert m.frame["item_id"].tolist() == ["row0", "row1"]
    assert m.modalities() == ["text"]


def test_no_modality_column_is_an_error_naming_what_is_expected():
    with pytest.raises(ManifestError, match="no modality column.*text, image, audio.*found columns: item_id, caption"):
        make({"item_id": ["a"], "caption": ["x"]})


def test_no_rows_and_no_usable_rows():
    with pytest.raises(ManifestError, match="no rows"):
        make({"text": []})
    with pytest.raises(ManifestError, match="none of the 2 rows"):
        make({"text": ["", " "], "image": ["", ""]})


def test_unknown_column_with_hint():
    with pytest.raises(ManifestError, match=r"'imgae' \(did you mean 'image'\?\)"):
        check_columns(["item_id", "imgae"], source="m.csv")
    check_columns(["item_id", "text", "meta_source"], source="m.csv")  # meta_* is allowed


def test_row_problems_name_rows():
    m = make({"text": ["ok", "", "fine"], "image": ["", "", ""], "split": ["train", "train", "holdout"]})
    problems = row_problems(m.frame)
    assert [(p.kind, p.row) for p in problems] == [("no_modality", 1), ("unknown_split", 2)]
    assert "split 'holdout' is not one of train, dev, test, unassigned" in str(problems[1])


@pytest.mark.parametrize("suffix", [".csv", ".parquet"])
def test_save_and_read_round_trip(tmp_path, suffix):
    m = make(
        {
            "item_id": ["a", "b", "c"],
            "text": ["x, with comma", "", 'a lone \r return, a "quote" and a\nline'],
            "image": ["i/a.png", "i/b.png", ""],
            "speaker": ["s1", "", "s2"],
        },
        tmp_path,
    )
    path = m.save(tmp_path / f"manifest{suffix}")
    back = read_table(path)
    pd.testing.assert_frame_equal(back, m.frame.astype(str), check_dtype=False)
    assert not list(tmp_path.glob(".*tmp"))  # the atomic write left no temporary file


def test_nul_characters_never_reach_a_csv_manifest(tmp_path):
    with pytest.raises(ManifestError, match="NUL character.*parquet"):
        make({"text": ["a \x00 b"]}, tmp_path).save(tmp_path / "m.csv")
    assert make({"text": ["a \x00 b"]}, tmp_path).save(tmp_path / "m.parquet")
    (tmp_path / "hand.csv").write_bytes(b"item_id,text\nok,a\nx,b\x00c\n")
    with pytest.raises(ManifestError, match="line 3 holds a NUL byte"):
        read_table(tmp_path / "hand.csv")


def test_ids_outside_the_rule_make_the_manifest_unusable_naming_rows():
    with pytest.raises(ManifestError, match=r"2 row\(s\) have an item id.*row 0: .*U\+0000.*row 2: .*backslash"):
        make({"item_id": ["a\x00", "ok", "b\\c"], "text": ["x", "y", "z"]})
