from align_data.config import SegmentConfig
from align_data.stages.source import Document, SourceStage
from align_data.stages.source.text import normalize, pack_segments, split_sentences


def test_normalize_unicode_and_space():
    assert normalize("  ﬁne\u00a0day\t\n here\u200b ") == "fine day here"


def test_split_keeps_abbreviations_and_decimals():
    text = "Dr. Smith arrived at 3.5 km past the U.K. border. She waved! Did he see her? Yes."
    assert split_sentences(text) == ["Dr. Smith arrived at 3.5 km past the U.K. border.", "She waved!",
                                     "Did he see her?", "Yes."]


def test_pack_respects_word_range():
    sentences = ["one two three.", "four five six seven.", "eight nine.", "ten."]
    segments = pack_segments(sentences, min_words=3, max_words=5)
    assert all(len(s.split()) <= 5 + 2 for s in segments)
    assert " ".join(segments).split() == " ".join(sentences).split()


def test_long_sentence_is_cut():
    segments = pack_segments([" ".join(f"w{i}" for i in range(25))], min_words=2, max_words=10)
    assert [len(s.split()) for s in segments] == [10, 10, 5]


def _docs(*texts):
    return [Document("t", i, f"d{i}", t) for i, t in enumerate(texts)]


def test_hostile_documents_become_rows_or_filtered_never_lost():
    hostile = ["", "   ", "!!! ... ???", "-rf --help is not an option here, it is text.", "😀🎉 party time for everyone 🎈",
               "x" * 10_000, ("word " * 2000).strip(), None, "A normal sentence with enough words in it."]
    stage = SourceStage(SegmentConfig(min_words=3, max_words=40, max_chars=2000), seed=0)
    records = stage.records(_docs(*hostile), shard_id=0)
    by_doc = {}
    for r in records:
        by_doc.setdefault(r.source.doc_id, []).append(r)
    assert set(by_doc) == {f"d{i}" for i in range(len(hostile))}  # every document accounted for
    assert by_doc["d0"][0].filtered == "empty"
    assert by_doc["d2"][0].filtered == "no_words"
    assert by_doc["d3"][0].live and by_doc["d3"][0].text.startswith("-rf")
    assert by_doc["d5"][0].filtered == "too_long"
    assert len(by_doc["d6"]) == 50 and all(r.live or r.filtered == "duplicate" for r in by_doc["d6"])
    assert by_doc["d7"][0].filtered == "empty"
    assert len({r.id for r in records}) == len(records)


def test_dedup_and_ids_are_stable():
    stage = SourceStage(SegmentConfig(min_words=2, max_words=10), seed=0)
    a = stage.records(_docs("Hello there, my friend.", "hello there my friend!"), shard_id=3)
    assert [r.filtered for r in a] == [None, "duplicate"]
    assert a[0].id == "t-000000000-000" and a[1].id == "t-000000001-000"
    assert a[0].next_text is None


def test_sampling_is_seeded():
    cfg = SegmentConfig(min_words=1, max_words=3, sample_fraction=0.5, dedup=False)
    docs = _docs(" ".join(f"Sentence number {i}." for i in range(40)))
    first = [r.filtered for r in SourceStage(cfg, seed=1).records(docs, 0)]
    again = [r.filtered for r in SourceStage(cfg, seed=1).records(docs, 0)]
    other = [r.filtered for r in SourceStage(cfg, seed=2).records(docs, 0)]
    assert first == again and first != other
    assert 5 < first.count("sampled_out") < 35


def test_heldout_split_is_per_document_and_seeded():
    cfg = SegmentConfig(min_words=2, max_words=4)
    docs = _docs(*[f"Document {i} has two sentences. Here is the second one." for i in range(200)])
    stage = SourceStage(cfg, seed=0, heldout_fraction=0.2)
    records = stage.records(docs, shard_id=0)
    by_doc = {}
    for r in records:
        by_doc.setdefault(r.source.doc_id, set()).add(r.split)
    assert all(len(s) == 1 for s in by_doc.values())  # a document never straddles splits
    held = sum(s == {"heldout"} for s in by_doc.values())
    assert 20 < held < 60
    again = SourceStage(cfg, seed=0, heldout_fraction=0.2).records(docs, shard_id=5)
    assert [r.split for r in again] == [r.split for r in records]  # not tied to the shard
    assert {r.split for r in SourceStage(cfg, seed=0).records(docs, 0)} == {"train"}
