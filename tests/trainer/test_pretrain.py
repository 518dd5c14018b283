"""`kret train pretrain` and `kret.trainer.fit` on the tiny random model: the loss moves, the version lands in the
registry with its lineage, the cached and Matryoshka variants run, an interrupted run resumes where it
stopped, and the CLI works end to end and turns user mistakes into one-line errors.

Training runs are the expensive part (~3-6 s each on a busy CPU), so one interrupted-then-resumed run is
shared by the lineage, loss and resume tests.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest

from kret.errors import UserInputError
from kret.trainer.losses import LOSSES

TOPICS = [
    ("서울특별시", "대한민국의 수도이자 최대 도시이다. 한강이 도시를 가로지르며 조선 시대부터 수도였다."),
    ("부산광역시", "대한민국 남동부의 항구 도시이다. 해운대 해수욕장과 국제 영화제로 알려져 있다."),
    ("한글", "세종대왕이 1443년에 창제한 한국어의 고유 문자이다. 자음과 모음을 모아 음절을 쓴다."),
    ("김치", "배추와 무 등을 소금에 절이고 고춧가루와 젓갈로 버무려 발효시킨 한국의 전통 음식이다."),
    ("태권도", "한국에서 유래한 무술로 발차기 기술이 특징이다. 올림픽 정식 종목으로 채택되었다."),
    ("한라산", "제주도 중앙에 있는 화산으로 높이는 1,947 미터이며 남한에서 가장 높은 산이다."),
    ("경복궁", "조선 왕조의 법궁으로 1395년에 지어졌다. 광화문을 정문으로 하며 근정전이 중심 건물이다."),
    ("이순신", "조선 중기의 무신으로 임진왜란 때 거북선을 이끌고 한산도 대첩에서 일본 수군을 물리쳤다."),
    ("비빔밥", "밥 위에 나물과 고기, 달걀을 얹고 고추장을 넣어 비벼 먹는 한국 음식이다."),
    ("독도", "동해에 있는 화산섬으로 동도와 서도 두 개의 큰 섬과 여러 바위섬으로 이루어져 있다."),
    ("광합성", "식물이 빛 에너지를 이용하여 이산화 탄소와 물로부터 포도당과 산소를 만드는 과정이다."),
    (
        "블랙홀",
        "중력이 매우 강하여 빛조차 빠져나올 수 없는 시공간의 영역이다. 사건의 지평선으로 둘러싸여 있다.",
    ),
    ("소프트웨어", "컴퓨터에서 실행되는 프로그램과 그에 관련된 문서를 통틀어 이르는 말이다."),
    ("피아노", "건반을 눌러 해머가 현을 때려 소리를 내는 건반 악기이다. 88개의 건반을 가진다."),
    ("축구", "두 팀이 공을 발로 차서 상대편 골문에 넣어 득점을 겨루는 구기 종목이다."),
    ("지구", "태양계의 세 번째 행성으로 생명체가 존재하는 것으로 알려진 유일한 천체이다."),
    ("달", "지구의 유일한 자연 위성으로 지구 주위를 약 27일마다 한 바퀴 돈다."),
    ("화폐", "상품 교환의 매개물로 가치의 척도와 지불 수단 구실을 하는 물건이다."),
    ("민주주의", "국민이 권력을 가지고 그 권력을 스스로 행사하는 제도 또는 그러한 정치를 지향하는 사상이다."),
    ("인터넷", "전 세계의 컴퓨터가 서로 연결되어 정보를 주고받는 통신망이다. TCP/IP를 사용한다."),
    ("커피", "커피나무 열매의 씨를 볶아 갈아서 뜨거운 물로 우려낸 음료이다. 카페인이 들어 있다."),
    ("고양이", "식육목 고양잇과의 포유류로 사람과 함께 살아온 반려동물이다. 야행성이다."),
    ("호랑이", "고양잇과에 속하는 대형 맹수로 몸에 검은 줄무늬가 있다. 한국 설화에 자주 나온다."),
    ("소나무", "소나뭇과의 상록 침엽 교목으로 바늘잎이 두 개씩 모여 난다. 한국에 널리 자란다."),
    ("한강", "강원도에서 발원하여 서울을 지나 황해로 흘러드는 강이다. 길이는 약 494 킬로미터이다."),
    ("삼국시대", "고구려, 백제, 신라 세 나라가 한반도와 만주 일대에서 서로 경쟁하던 시대이다."),
    ("고려", "918년 왕건이 세운 나라로 1392년까지 한반도를 다스렸다. 고려청자와 팔만대장경이 유명하다."),
    ("조선", "1392년 이성계가 세운 왕조로 1897년 대한제국으로 바뀔 때까지 이어졌다."),
    ("반도체", "전기 전도도가 도체와 부도체의 중간인 물질이다. 실리콘이 대표적이며 집적 회로에 쓰인다."),
    ("자동차", "엔진의 동력으로 바퀴를 굴려 도로 위를 달리는 차량이다. 내연 기관과 전기 모터를 쓴다."),
    ("기후 변화", "온실 기체의 증가 등으로 지구의 평균 기온과 기후 체계가 장기간 변하는 현상이다."),
    ("도서관", "책과 자료를 모아 두고 사람들이 읽거나 빌릴 수 있도록 운영하는 시설이다."),
    ("올림픽", "4년마다 열리는 국제 종합 스포츠 대회로 하계와 동계 대회로 나뉜다."),
    ("바둑", "두 사람이 흑돌과 백돌을 번갈아 놓아 집을 많이 차지하는 쪽이 이기는 놀이이다."),
    ("한복", "한국의 전통 의복으로 저고리와 치마 또는 바지로 이루어진다. 명절에 많이 입는다."),
    ("판소리", "소리꾼 한 명이 고수의 북장단에 맞추어 긴 이야기를 노래와 말로 엮어 부르는 예술이다."),
]
# Pages the pair builder must drop: empty, disambiguation, list page.
FILTERED = [
    ("빈 문서", ""),
    ("화성 (동음이의)", "화성의 다른 뜻은 다음과 같다."),
    (
        "대한민국의 산 목록",
        "이 문서는 대한민국의 산을 높이 순서로 정리한 목록이며, 각 산의 높이와 위치를 함께 적었다.",
    ),
]
MIX_ROWS = [
    {"query": f"질문 {i}: {title}에 대해 알려줘", "positive": f"{title}에 관한 답변 {i}. {body}"}
    for i, (title, body) in enumerate(TOPICS[:8])
]


def write_wikiextractor(root: Path) -> Path:
    """~40 docs in WikiExtractor's layout (HTML-escaped, title repeated as the first body line)."""
    folder = root / "text" / "AA"
    folder.mkdir(parents=True)
    docs = []
    for i, (title, body) in enumerate(TOPICS + FILTERED, start=1):
        text = (
            f"{body}\n개요.\n{title}에 대한 자세한 설명은 이 문서의 본문에서 다룬다. 문서 번호는 {i}이다.\n"
            if body
            else ""
        )
        docs.append(
            f'<doc id="{i}" url="https://ko.wikipedia.org/wiki?curid={i}" title="{title}">\n{title}\n\n{text}</doc>\n'
        )
    (folder / "wiki_00").write_text("".join(docs[:20]), encoding="utf-8")
    (folder / "wiki_01").write_text("".join(docs[20:]), encoding="utf-8")
    return root / "text"


class _Stop(Exception):
    """Raised from the progress callback to simulate a run killed mid-way."""


@pytest.fixture(scope="module")
def resumed_run(tmp_path_factory, tiny_model_dir):
    """A pretrain run interrupted after step 2 (checkpoint at 2), then resumed to step 4 and registered."""
    from kret.api import Kret
    from kret.trainer.fit import FitConfig
    from kret.trainer.pretrain import pretrain

    root = tmp_path_factory.mktemp("pretrain")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("KRET_CONFIG", str(root / "no-kret.toml"))
        mp.setenv("HF_HUB_OFFLINE", "1")
        wiki = write_wikiextractor(root / "wiki")
        mix = root / "mix.jsonl"
        mix.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in MIX_ROWS), encoding="utf-8")
        # One torch thread: on a busy 2-core machine more threads make each step ~10x slower, not faster.
        kr = Kret(home=root / "home", model=str(tiny_model_dir), torch_threads=1)

        def cfg(resume: bool) -> FitConfig:
            return FitConfig(
                batch_size=8, lr=5e-3, max_steps=4, save_steps=2, warmup_ratio=0.0, resume=resume
            )

        common = dict(
            max_pairs=None,
            mix=[(mix, 0.2)],
            consistency=30,
            consistency_sample=32,
            run_name="t1",
            max_body_tokens=48,
        )
        events: list[dict] = []

        def killer(**kw):
            events.append(kw)
            steps = [e for e in events if e.get("stage") == "train" and e.get("advance") == 1]
            if kw in steps and len(steps) == 3:
                raise _Stop

        with pytest.raises(_Stop):
            pretrain(kr, wiki, fit_cfg=cfg(False), progress=killer, **common)
        checkpoints = sorted(p.name for p in (kr.settings.home / "runs" / "t1" / "checkpoints").iterdir())
        resumed_events: list[dict] = []
        info = pretrain(
            kr, wiki, fit_cfg=cfg(True), progress=lambda **kw: resumed_events.append(kw), **common
        )
        yield {
            "kr": kr,
            "info": info,
            "wiki": wiki,
            "mix": mix,
            "checkpoints_at_interrupt": checkpoints,
            "first_events": events,
            "resumed_events": resumed_events,
            "base": str(tiny_model_dir),
        }


def test_loss_moves_and_weights_change(resumed_run):
    train = resumed_run["info"].lineage["train"]
    assert train["loss_first"] is not None and train["loss_last"] is not None
    assert train["loss_first"] != train["loss_last"]
    from safetensors.numpy import load_file

    before = load_file(str(Path(resumed_run["base"]) / "model.safetensors"))
    after = load_file(str(Path(resumed_run["info"].path) / "model.safetensors"))
    assert before.keys() == after.keys()
    assert any(not np.array_equal(before[k], after[k]) for k in before)


def test_registered_version_and_lineage(resumed_run):
    kr, info = resumed_run["kr"], resumed_run["info"]
    got = kr.registry.get(info.name)
    assert info.name.startswith("pt-") and got.fingerprint == info.fingerprint
    lin = got.lineage
    assert lin["kind"] == "pretrain" and lin["evals"] == []
    assert lin["base"]["fingerprint"] == kr.resolve_model().fingerprint
    wiki_entry = lin["data"][0]
    assert wiki_entry["format"] == "wikiextractor" and wiki_entry["method"] == "content"
    assert len(wiki_entry["sha256"]) == 64 and wiki_entry["files"] == 2
    assert lin["data"][1]["path"] == str(resumed_run["mix"].resolve())
    pairs_file = Path(lin["pairs"]["path"])
    assert hashlib.sha256(pairs_file.read_bytes()).hexdigest() == lin["pairs"]["sha256"]
    stats = lin["pair_stats"]
    assert stats["pages_read"] == len(TOPICS) + len(FILTERED)
    assert stats["removed"]["empty_or_redirect"] == 1
    assert stats["removed"]["disambiguation"] == 1
    assert stats["removed"]["list_page"] == 1
    counts = lin["pair_counts"]
    assert counts["wiki_pairs"] == stats["kept"] == len(TOPICS)
    assert counts["after_mix"] == counts["wiki_pairs"] + lin["mix"][0]["used"]
    assert lin["mix"][0]["ratio"] == 0.2 and lin["mix"][0]["used"] == 7  # round(0.2 * 36) of 8 rows
    assert counts["after_consistency"] == counts["after_mix"] - lin["consistency"]["dropped"]
    assert counts["final"] == lin["pairs"]["count"] == sum(1 for _ in pairs_file.open(encoding="utf-8"))
    hp = lin["hyperparameters"]
    assert hp["batch_size"] == 8 and hp["max_steps"] == 4 and hp["lr"] == 5e-3
    assert lin["train"]["loss_name"] == "MultipleNegativesRankingLoss"
    assert lin["train"]["device"] == "cpu" and lin["train"]["effective_batch"] == 8
    assert lin["prompts"] == {"query": "query: ", "passage": "passage: "}
    for key in ("kret_version", "git_commit", "training_seconds", "run"):
        assert key in lin
    # The version is a complete model folder that embeds; checkpoints are gone after registration.
    from kret.engine.runtimes.torch_rt import TorchEmbedder

    emb = TorchEmbedder(got, threads=1)
    assert emb.prompts == {"query": "query: ", "passage": "passage: "}  # the base's prompts carried over
    vecs = emb.encode_passages(["한강은 서울을 지난다."])
    assert vecs.shape == (1, 32) and np.isfinite(vecs).all()
    assert not (kr.settings.home / "runs" / "t1" / "checkpoints").exists()
    run = json.loads((kr.settings.home / "runs" / "t1" / "run.json").read_text())
    assert run["status"] == "registered" and run["version"] == info.name


def test_resume_continues_from_checkpoint(resumed_run):
    assert resumed_run["checkpoints_at_interrupt"] == ["checkpoint-2"]
    train = resumed_run["info"].lineage["train"]
    assert train["resumed_from_step"] == 2 and train["steps"] == 4 and train["steps_run"] == 2
    assert [s for s, _ in train["loss_history"]] == [1, 2, 3, 4]  # the log history carries over
    ev = resumed_run["resumed_events"]
    assert any("reusing" in (e.get("note") or "") for e in ev)  # pairs file reused, not rebuilt
    assert not any(e.get("stage") == "pairs" for e in ev)
    starts = [e for e in ev if e.get("stage") == "train" and "completed" in e]
    assert starts and starts[0]["completed"] == 2 and starts[0]["total"] == 4
    steps = [e for e in ev if e.get("stage") == "train" and e.get("advance") == 1]
    assert len(steps) == 2 and all(e["rate"] > 0 for e in steps)


def test_resume_refuses_other_data_and_finished_runs(resumed_run, tmp_path):
    from kret.trainer.fit import FitConfig
    from kret.trainer.pretrain import pretrain

    kr = resumed_run["kr"]
    with pytest.raises(UserInputError, match="already finished"):
        pretrain(kr, resumed_run["wiki"], max_pairs=None, fit_cfg=FitConfig(resume=True), run_name="t1")
    with pytest.raises(UserInputError, match="exists"):
        (kr.settings.home / "runs" / "t2").mkdir(parents=True)
        pretrain(kr, resumed_run["wiki"], max_pairs=None, fit_cfg=FitConfig(), run_name="t2")


@pytest.fixture(scope="module")
def tiny_st(tiny_model_dir):
    """The tiny model loaded once; tests train copies (loading the tokenizer costs seconds each time)."""
    from sentence_transformers import SentenceTransformer

    return SentenceTransformer(str(tiny_model_dir), local_files_only=True)


def fresh(model):
    """A trainable copy that shares the (read-only) tokenizer with the original."""
    import copy

    processor = model[0].processor
    return copy.deepcopy(model, {id(processor): processor})


def _rows(n: int) -> list[dict[str, str]]:
    return [{"anchor": t, "positive": b, "pair_id": str(i)} for i, (t, b) in enumerate(TOPICS[:n])]


def test_cached_variant(tiny_kret, tiny_st, tmp_path):
    from kret.trainer.fit import FitConfig, fit

    base = tiny_kret.resolve_model()
    cfg = FitConfig(batch_size=8, mini_batch_size=4, max_steps=2, lr=5e-3, warmup_ratio=0.0, torch_threads=1)
    final, stats = fit(
        base,
        _rows(16),
        cfg,
        run_dir=tmp_path / "run",
        prompts={"query": "query: ", "passage": "passage: "},
        model=fresh(tiny_st),
    )
    assert stats["loss_name"] == "CachedMultipleNegativesRankingLoss" and stats["mini_batch_size"] == 4
    assert stats["steps"] == 2 and stats["loss_first"] != stats["loss_last"]
    assert (final / "modules.json").is_file()


def test_checkpoints_by_time_as_well_as_by_steps(tiny_kret, tiny_st, tmp_path):
    """A CPU step can take a minute, so 200-step checkpoints left hours of training to an interrupt: a run also
    saves when save_minutes passed since the last checkpoint (here: at every step; the newest two are kept)."""
    from kret.trainer.fit import FitConfig, fit

    cfg = FitConfig(batch_size=4, max_steps=3, lr=5e-3, warmup_ratio=0.0, torch_threads=1, save_minutes=1e-9)
    run = tmp_path / "run"
    seen: list[list[str]] = []

    def watch(stage=None, advance=0, **_):
        if stage == "train" and advance == 1 and (run / "checkpoints").is_dir():
            seen.append(sorted(p.name for p in (run / "checkpoints").iterdir()))

    fit(
        tiny_kret.resolve_model(),
        _rows(8),
        cfg,
        run_dir=run,
        prompts={},
        model=fresh(tiny_st),
        progress=watch,
    )
    # the progress callback runs before the step's checkpoint is written: at step 3 it sees steps 1 and 2
    assert seen[-1] == ["checkpoint-1", "checkpoint-2"]
    with pytest.raises(UserInputError, match="save_minutes"):
        FitConfig(save_minutes=0).validate()


def test_matryoshka_variant_and_small_data_batch_cap(tiny_kret, tiny_st, tmp_path):
    from kret.trainer.fit import FitConfig, fit

    base = tiny_kret.resolve_model()
    cfg = FitConfig(
        batch_size=32,
        max_steps=1,
        lr=5e-3,
        matryoshka_dims=[32, 16, 8],
        matryoshka_weights=[1, 0.5, 0.5],
        torch_threads=1,
    )
    final, stats = fit(base, _rows(6), cfg, run_dir=tmp_path / "run", prompts={}, model=fresh(tiny_st))
    assert stats["loss_name"] == "MatryoshkaLoss(MultipleNegativesRankingLoss)"
    assert stats["batch_capped"] and stats["batch_size"] == 6 and stats["steps"] == 1
    assert (final / "modules.json").is_file()
    with pytest.raises(UserInputError, match="larger than"):
        cfg = FitConfig(max_steps=1, matryoshka_dims=[64])
        fit(base, _rows(6), cfg, run_dir=tmp_path / "r2", prompts={}, model=fresh(tiny_st))


def test_max_seq_length_truncates_training_only(tiny_kret, tiny_st, tmp_path):
    """The CPU budget knob: training batches are cut to N tokens, the saved model keeps its own limit."""
    from sentence_transformers import SentenceTransformer

    from kret.trainer.fit import FitConfig, fit

    model = fresh(tiny_st)
    own_limit = model.max_seq_length
    widths: list[int] = []
    forward = model[0].forward

    def spy(features, *args, **kwargs):
        if model[0].training:  # training steps, not the model card's encode at save time
            widths.append(int(features["input_ids"].shape[1]))
        return forward(features, *args, **kwargs)

    model[0].forward = spy
    rows = [{"anchor": t, "positive": (b + " ") * 20} for t, b in TOPICS[:8]]
    cfg = FitConfig(batch_size=4, max_steps=1, lr=5e-3, max_seq_length=8, torch_threads=1)
    final, _ = fit(tiny_kret.resolve_model(), rows, cfg, run_dir=tmp_path / "run", prompts={}, model=model)
    assert widths and max(widths) <= 8
    assert (
        own_limit > 8 and SentenceTransformer(str(final), local_files_only=True).max_seq_length == own_limit
    )


def test_fit_config_validation():
    from kret.trainer.fit import FitConfig

    for bad in (
        FitConfig(batch_size=1),
        FitConfig(loss="triplet"),
        FitConfig(matryoshka_dims=[32, 32]),
        FitConfig(lr=0),
        FitConfig(warmup_ratio=1.0),
        FitConfig(max_seq_length=4),
        FitConfig(temperature=0),
    ):
        with pytest.raises(UserInputError):
            bad.validate()


def _cli():
    from kret.cli.main import cli, register_commands

    register_commands()

    return cli


def test_cli_end_to_end(home, tiny_model_dir, tmp_path, monkeypatch):
    from click.testing import CliRunner

    from kret.api import Kret

    monkeypatch.setenv("KRET_TORCH_THREADS", "1")
    wiki = write_wikiextractor(tmp_path / "wiki")
    args = ["--home", str(home), "train", "pretrain", "--wiki", str(wiki), "--base", str(tiny_model_dir)]
    args += ["--max-pairs", "16", "--batch-size", "8", "--max-steps", "1", "--set-default", "--json"]
    result = CliRunner().invoke(_cli(), args)
    assert result.exit_code == 0, result.output
    line = next(x for x in reversed(result.stdout.splitlines()) if x.startswith("{"))
    out = json.loads(line)
    assert out["version"].startswith("pt-") and out["pair_counts"]["final"] == 16
    assert out["train"]["steps"] == 1
    kr = Kret(home=home)
    assert kr.registry.default_version() == out["version"]
    assert (
        kr.registry.get(out["version"]).lineage["base"]["fingerprint"]
        == kr.registry.resolve(str(tiny_model_dir)).fingerprint
    )


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--wiki", "/nonexistent/kowiki"], "no such file"),
        (["--wiki", "{wiki}", "--mix", "pairs.jsonl"], "FILE:RATIO"),
        (["--wiki", "{wiki}", "--mix", "pairs.jsonl:abc"], "not a number"),
        (["--wiki", "{wiki}", "--mix", "{wiki}/nope.jsonl:1"], "no such file"),
        (["--wiki", "{wiki}", "--matryoshka-dims", "32,x"], "comma-separated integers"),
        (["--wiki", "{wiki}", "--matryoshka-dims", "0,16"], "distinct positive"),
        (["--wiki", "{wiki}", "--resume"], "--run-name"),
    ],
)
def test_cli_user_errors(home, tiny_model_dir, tmp_path, extra, message):
    from click.testing import CliRunner

    wiki = tmp_path / "wiki"
    wiki.mkdir()
    extra = [x.replace("{wiki}", str(wiki)) for x in extra]
    args = ["--home", str(home), "train", "pretrain", "--base", str(tiny_model_dir), *extra]
    result = CliRunner().invoke(_cli(), args)
    assert isinstance(result.exception, UserInputError), result.output
    assert message in str(result.exception) and "\n" not in str(result.exception)


def test_cli_help_teaches():
    from click.testing import CliRunner

    result = CliRunner().invoke(_cli(), ["train", "pretrain", "--help"])
    assert result.exit_code == 0
    for needle in ("KoE5-PT", "--mini-batch-size", "--resume", "torchrun", "kret eval", "FILE:RATIO"):
        assert needle in result.output


# ---------------------------------------------------------------------------------------------------------
# memory: the cached loss's mini-batch is sized from the model, the sequence length and the budget
# ---------------------------------------------------------------------------------------------------------


def test_mini_batch_sizing_follows_length_and_budget():
    from kret.trainer.memory import ModelShape, activation_bytes_per_text, mini_batch_for

    e5_small = ModelShape(parameters=118_000_000, layers=12, hidden=384, intermediate=1536, heads=12)
    # longer texts and smaller budgets give smaller mini-batches; never below 1 nor above the batch
    assert activation_bytes_per_text(e5_small, 512) > 2 * activation_bytes_per_text(e5_small, 256)
    m256 = mini_batch_for(e5_small, 256, 512, memory_gb=6)
    m512 = mini_batch_for(e5_small, 512, 512, memory_gb=6)
    assert 1 <= m512 < m256 < 512
    assert mini_batch_for(e5_small, 256, 512, memory_gb=12) > m256
    assert mini_batch_for(e5_small, 256, 512, memory_gb=1) == 1  # the weights alone do not fit: 1, not 0
    assert mini_batch_for(e5_small, 16, 8, memory_gb=6) == 8  # a whole small batch fits
    # the default e5-small run (batch 32 x 4 texts at 256 tokens) cannot hold all 128 texts in 6 GB
    assert m256 < 128


def test_mini_batch_counts_what_the_process_already_holds():
    """Fine-tuning mines first (serving model, Kiwi, catalog): measured 8.4 GB peak with the bare-process
    estimate, because what mining left resident was not in the budget. The RSS at sizing time is: what it
    holds beyond a bare process (weights + interpreter) is charged on top of the estimate."""
    from kret.trainer.memory import ModelShape, mini_batch_for, resident_bytes

    e5_small = ModelShape(parameters=118_000_000, layers=12, hidden=384, intermediate=1536, heads=12)
    bare = mini_batch_for(e5_small, 256, 512, memory_gb=6)
    lean = mini_batch_for(e5_small, 256, 512, memory_gb=6, resident=int(0.9e9))
    mined = mini_batch_for(e5_small, 256, 512, memory_gb=6, resident=int(1.5e9))
    after_much = mini_batch_for(e5_small, 256, 512, memory_gb=6, resident=int(2.5e9))
    assert lean == bare  # a lean process never gets more than the estimate allows
    assert 1 <= after_much < mined < bare  # every resident GB beyond a bare process shrinks the mini-batch
    rss = resident_bytes()
    assert rss is None or rss > 10 * 2**20


def test_default_fit_config_is_cached_and_truncated(tiny_kret, tiny_st, tmp_path):
    """Defaults fit a laptop: 256-token training texts and a cached loss whenever the batch would not fit."""
    from kret.trainer.fit import FitConfig, fit, resolve_mini_batch

    cfg = FitConfig()
    assert cfg.max_seq_length == 256 and cfg.cached and cfg.mini_batch_size is None
    model = fresh(tiny_st)
    # the tiny model's whole batch fits 6 GB: the plain loss, which computes the same thing faster
    assert resolve_mini_batch(model, cfg, 32)[0] is None
    # a budget the batch does not fit switches to the cached loss with a smaller mini-batch
    small = FitConfig(memory_gb=0.5)
    mini, info = resolve_mini_batch(model, small, 32)
    assert mini is not None and 1 <= mini < 32 and info["how"] == "sized from the memory budget"
    assert resolve_mini_batch(model, FitConfig(cached=False, memory_gb=0.5), 32)[0] is None
    assert resolve_mini_batch(model, FitConfig(mini_batch_size=5), 32)[0] == 5
    # gist with several negatives needs the cached variant even when the batch fits
    assert resolve_mini_batch(model, FitConfig(loss="gist"), 8, n_negative_columns=2)[0] == 8
    base = tiny_kret.resolve_model()
    _, stats = fit(
        base,
        _rows(8),
        FitConfig(batch_size=8, max_steps=1, lr=5e-3, memory_gb=0.5, torch_threads=1),
        run_dir=tmp_path / "run",
        prompts={},
        model=fresh(tiny_st),
    )
    assert stats["loss_name"] == "CachedMultipleNegativesRankingLoss"
    assert stats["mini_batch_size"] < 8 and stats["max_seq_length"] == min(256, model.max_seq_length)


@pytest.mark.parametrize("name", sorted(LOSSES))
def test_every_registered_loss_builds_plain_and_cached(tiny_kret, tiny_st, name):
    """A loss is one module plus one ``LOSSES`` entry: each builds in both forms under the name the lineage
    records, and a guided loss's frozen guide is the base model."""
    from kret.trainer.fit import FitConfig, _build_loss, _loss_name

    assert set(LOSSES) >= {"mnrl", "gist"}
    base = tiny_kret.resolve_model()
    cfg = FitConfig(loss=name)
    for mini in (None, 4):
        loss = _build_loss(fresh(tiny_st), base, cfg, mini, "cpu")
        assert type(loss).__name__ == _loss_name(cfg, mini) == LOSSES[name].display_name(mini)
        guide = getattr(loss, "guide", None)
        assert (guide is not None) == LOSSES[name].guided
        if guide is not None:
            assert not any(p.requires_grad for p in guide.parameters())
    with pytest.raises(UserInputError, match="mnrl"):
        FitConfig(loss="infonce").validate()


def test_bf16_autocast_on_cpu_trains_and_is_recorded(tiny_kret, tiny_st, tmp_path):
    from kret.trainer.fit import FitConfig, fit

    base = tiny_kret.resolve_model()
    cfg = FitConfig(batch_size=8, max_steps=2, lr=5e-3, warmup_ratio=0.0, precision="bf16", torch_threads=1)
    final, stats = fit(base, _rows(16), cfg, run_dir=tmp_path / "run", prompts={}, model=fresh(tiny_st))
    assert stats["precision"] == "bf16" and np.isfinite(stats["loss_last"])
    assert (final / "modules.json").is_file()
    with pytest.raises(UserInputError, match="precision"):
        FitConfig(precision="int8").validate()
    with pytest.raises(UserInputError, match="memory"):
        FitConfig(memory_gb=0).validate()
