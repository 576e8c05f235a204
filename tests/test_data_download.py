"""A fresh machine online: the data fetches itself from the authors' Hugging Face dataset (here a stand-in
for the hub serves files built from the shared data folder; nothing touches the network)."""
import io
import json
import subprocess
import sys
import tarfile

import pytest

import data
from formats import training_files
from formats import senteval
import train

HEAD = 300  # training lines served as the "full" wiki file: enough for a 2-step run


@pytest.fixture
def hub(data_root, tmp_path, monkeypatch):
    """A stand-in for huggingface_hub.hf_hub_download serving the authors' three files; records each call."""
    served = tmp_path / "hub"
    served.mkdir()
    with tarfile.open(served / "senteval.tar", "w") as tar:  # SentEval's downstream/ layout, as the authors'
        for name in ("STS", "SICK"):
            tar.add(data_root / "senteval" / name, arcname=name)
    lines = (data_root / "wiki" / "wiki1m_head.txt").read_text().splitlines()[:HEAD]
    (served / "wiki1m_for_simcse.txt").write_text("\n".join(lines) + "\n")
    (served / "nli_for_simcse.csv").write_bytes((data_root / "nli" / "nli_small_for_simcse.csv").read_bytes())
    calls = []

    def hf_hub_download(repo_id, filename, repo_type=None):
        assert (repo_id, repo_type) == ("princeton-nlp/datasets-for-simcse", "dataset")
        calls.append(filename)
        return str(served / filename)
    import huggingface_hub
    monkeypatch.setattr(huggingface_hub, "hf_hub_download", hf_hub_download)
    monkeypatch.delenv(data.DATA_DIR_ENV, raising=False)
    return served, calls


def test_empty_data_folder_fetches_unpacks_checks_and_trains(hub, tiny_checkpoint, tmp_path, capsys):
    _, calls = hub
    empty = tmp_path / "data"
    # train_file: the quick preset's wiki1m_head.txt
    cfg = train.TrainConfig(model=tiny_checkpoint, data_dir=str(empty), output_dir=str(tmp_path / "run"),
                            batch_size=8, max_steps=2, eval_steps=2)
    train.train(cfg, progress=False, test=False)
    assert sorted(calls) == ["senteval.tar", "wiki1m_for_simcse.txt"]
    assert sorted(p.name for p in empty.iterdir()) == ["senteval", "wiki"]  # no .partial left
    assert (empty / "senteval" / "STS" / "STS16-en-test").is_dir() and (empty / "senteval" / "SICK").is_dir()
    out = capsys.readouterr().out
    assert "wiki1m_head.txt not found: training on the authors' full file wiki/wiki1m_for_simcse.txt" in out
    first = json.loads((tmp_path / "run" / "log.jsonl").read_text().splitlines()[0])
    assert (first["train_file"] == str(empty / "wiki" / "wiki1m_for_simcse.txt")
            and first["train_examples"] == HEAD)

    calls.clear()  # a second run fetches nothing
    train.train(cfg, progress=False, test=False, overwrite=True)
    assert calls == []


def test_download_fetches_everything_once(hub, tmp_path):
    _, calls = hub
    data.download(tmp_path / "data")
    data.download(tmp_path / "data")
    assert sorted(calls) == ["nli_for_simcse.csv", "senteval.tar", "wiki1m_for_simcse.txt"]
    assert training_files.read(tmp_path / "data" / "nli" / "nli_for_simcse.csv")[0]


def unpack_fails(tmp_path, tar_bytes, match):
    (tmp_path / "senteval.tar").write_bytes(tar_bytes)
    with pytest.raises(data.DataError, match=match):
        data.unpack_senteval(tmp_path / "senteval.tar", tmp_path / "data" / "senteval", senteval.check)
    assert not (tmp_path / "data").exists() or list((tmp_path / "data").iterdir()) == []  # nothing half-made


def test_truncated_tar_leaves_nothing(hub, tmp_path):
    served, _ = hub
    whole = (served / "senteval.tar").read_bytes()
    (tmp_path / "data").mkdir()
    unpack_fails(tmp_path, whole[:len(whole) // 2],
                 r"senteval.tar: cannot unpack .* delete it and fetch it again")


def test_wrong_pair_count_names_the_file_and_leaves_nothing(data_root, tmp_path):
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        tar.add(data_root / "senteval" / "STS", arcname="downstream/STS")  # a wrapping folder is fine
        tar.add(data_root / "senteval" / "SICK", arcname="downstream/SICK",
                filter=lambda info: None if info.name.endswith("SICK_trial.txt") else info)
        trial = (data_root / "senteval" / "SICK" / "SICK_trial.txt").read_bytes()
        trial = b"\n".join(trial.split(b"\n")[:-3]) + b"\n"  # two pairs fewer
        info = tarfile.TarInfo("downstream/SICK/SICK_trial.txt")
        info.size = len(trial)
        tar.addfile(info, io.BytesIO(trial))
    (tmp_path / "data").mkdir()
    unpack_fails(tmp_path, buffer.getvalue(),
                 r"SICK_trial.txt: 498 scored pairs, SentEval's SICKRelatedness dev has 500")


def test_interrupted_unpack_leaves_nothing(hub, tmp_path, monkeypatch):
    served, _ = hub
    real = tarfile.TarFile.extractall

    def extract_then_die(self, path, **kw):
        real(self, path, **kw)
        raise KeyboardInterrupt
    monkeypatch.setattr(tarfile.TarFile, "extractall", extract_then_die)
    (tmp_path / "data").mkdir()
    with pytest.raises(KeyboardInterrupt):
        data.unpack_senteval(served / "senteval.tar", tmp_path / "data" / "senteval", senteval.check)
    assert list((tmp_path / "data").iterdir()) == []


def test_offline_without_data_is_one_line(tmp_path):
    env = {"HF_HUB_OFFLINE": "1", "PATH": "/usr/bin:/bin", "HOME": str(tmp_path)}
    run = subprocess.run([sys.executable, "train.py", "--data-dir", str(tmp_path / "none"), "--max-steps",
                          "2", "--no-test", "--output-dir", str(tmp_path / "run")], cwd=data.REPO,
                         capture_output=True, text=True, env=env)
    message = run.stderr.strip()
    assert run.returncode == 1 and "Traceback" not in message and len(message.splitlines()) == 1, message
    assert "could not download wiki1m_for_simcse.txt" in message and "python data.py download" in message
