import pytest

from pipeline.data.adapters import detect_format, load_dataset
from pipeline.data.manifest import ManifestError
from tests.helpers import tone, write_audio, write_image


def flickr_layout(root, token_format=False, with_splits=("train",)):
    names = ["1000_a.jpg", "1001_b.jpg", "1002_c.jpg"]
    for name in names:
        write_image(root / "Images" / name)
    if token_format:
        lines = [f"{n}#{i}\t{n[:4]} caption {i}" for n in names for i in range(2)]
        (root / "Flickr8k.token.txt").write_text("\n".join(lines) + "\n")
    else:
        rows = [f"{n},{n[:4]} caption {i}, with a comma" for n in names for i in range(2)]
        (root / "captions.txt").write_text("image,caption\n" + "\n".join(rows) + "\n")
    if "train" in with_splits:
        (root / "Flickr_8k.trainImages.txt").write_text("1000_a.jpg\n")
    if "dev" in with_splits:
        (root / "Flickr_8k.devImages.txt").write_text("1001_b.jpg\n")
    return root


@pytest.mark.parametrize("token_format", [False, True])
def test_flickr8k_layouts_and_partial_splits(tmp_path, token_format):
    root = flickr_layout(tmp_path, token_format)
    assert detect_format(root) == "flickr8k"
    m = load_dataset(root)
    assert len(m) == 6 and m.frame["item_id"].nunique() == 3
    assert m.frame.groupby("item_id")["split"].first().to_dict() == {
        "1000_a": "train",
        "1001_b": "unassigned",
        "1002_c": "unassigned",
    }
    assert m.frame["image"].iloc[0] == "Images/1000_a.jpg"
    if not token_format:
        assert m.frame["text"].iloc[0] == "1000 caption 0, with a comma"  # unquoted comma kept


def test_flickr8k_empty_caption_is_reported_with_its_line(tmp_path):
    root = flickr_layout(tmp_path)
    (root / "captions.txt").write_text("image,caption\n1000_a.jpg,a dog\n1001_b.jpg,  \n")
    m = load_dataset(root)
    [problem] = m.problems
    assert problem.kind == "empty_caption" and problem.row == 1 and "captions.txt line 3" in problem.message


def test_flickr8k_bad_header(tmp_path):
    (tmp_path / "captions.txt").write_text("photo;text\nx.jpg;y\n")
    with pytest.raises(ManifestError, match="expected a CSV header 'image,caption'"):
        load_dataset(tmp_path)


def test_fsdd(tmp_path):
    for name in ["3_alice_0.wav", "3_alice_7.wav", "7_bob_12.wav"]:
        write_audio(tmp_path / "recordings" / name, tone(0.1, 8000), 8000)
    write_audio(tmp_path / "recordings" / "x_bob_1.wav", tone(0.1, 8000), 8000)  # misnamed
    assert detect_format(tmp_path) == "fsdd"
    m = load_dataset(tmp_path)
    assert m.frame[["text", "label", "speaker", "split"]].values.tolist() == [
        ["three", "3", "alice", "test"],
        ["three", "3", "alice", "dev"],
        ["seven", "7", "bob", "train"],
    ]
    assert [p.kind for p in m.problems] == ["bad_name"]


def test_esc50_subset_split_keeps_every_class_in_train(tmp_path):
    rows = ["filename,fold,target,category,esc10,src_file,take"]
    for c, cat in enumerate(["dog", "sea_waves"]):
        for k in range(7):
            rows.append(f"4-{c}{k}-A-{c}.flac,4,{c},{cat},False,{c}{k},A")
            write_audio(tmp_path / "audio" / f"4-{c}{k}-A-{c}.flac", tone(0.1, 16000), 16000)
    (tmp_path / "esc50.csv").write_text("\n".join(rows) + "\n")
    m = load_dataset(tmp_path)
    assert m.format == "esc50" and set(m.frame["text"]) == {"dog", "sea waves"}
    per_split = m.frame.groupby(["label", "split"]).size().unstack()
    assert per_split.loc["dog"].to_dict() == {"dev": 1, "test": 1, "train": 5}


def test_folder_with_sidecars_and_split_folders(tmp_path):
    write_image(tmp_path / "train" / "cat.jpg")
    (tmp_path / "train" / "cat.txt").write_text("a cat\n\na sleeping cat\n")
    write_audio(tmp_path / "train" / "cat.wav", tone(0.1, 16000), 16000)
    write_image(tmp_path / "test" / "dog.png")
    m = load_dataset(tmp_path)
    assert m.format == "folder"
    cat = m.frame[m.frame["item_id"] == "train/cat"]
    assert cat["text"].tolist() == ["a cat", "a sleeping cat"] and set(cat["audio"]) == {"train/cat.wav"}
    dog = m.frame[m.frame["item_id"] == "test/dog"].iloc[0]
    assert (dog["split"], dog["text"], dog["image"]) == ("test", "", "test/dog.png")


def test_folder_without_split_folders_hashes_stably(tmp_path):
    for i in range(40):
        write_image(tmp_path / f"p{i}.png")
    a = load_dataset(tmp_path).frame["split"].tolist()
    assert a == load_dataset(tmp_path).frame["split"].tolist()
    assert set(a) <= {"train", "dev", "test"} and a.count("train") > 20


def test_user_manifest(tmp_path):
    write_image(tmp_path / "x.png")
    (tmp_path / "manifest.csv").write_text("item_id,split,text,image,meta_source\nx,train,a red thing,x.png,web\n")
    m = load_dataset(tmp_path)
    assert m.format == "manifest" and m.metadata_columns == ["meta_source"]
    (tmp_path / "manifest.csv").write_text("item_id,captoin,image\nx,a red thing,x.png\n")
    with pytest.raises(ManifestError, match="unknown column"):
        load_dataset(tmp_path)


def test_unknown_layout_and_missing_path(tmp_path):
    (tmp_path / "notes.md").write_text("nothing here")
    with pytest.raises(ManifestError, match="not a dataset layout this project reads"):
        load_dataset(tmp_path)
    with pytest.raises(ManifestError, match="no such file"):
        load_dataset(tmp_path / "nope")
    with pytest.raises(ManifestError, match="Unknown dataset format 'coco'"):
        load_dataset(tmp_path, format="coco")
