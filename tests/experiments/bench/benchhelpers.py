"""For the harness's tests: a hand-made benchmark of six short documents and their questions, fast method
options, and a one-thread block for torch."""

from __future__ import annotations



from memkit.datasets.records import BenchQuestion, Benchmark, bench_document

FAST_OPTIONS = {  # short answers and little training keep the harness's tests fast
    "closed_book": {"max_new_tokens": "3"},
    "prompt": {"max_new_tokens": "3"},
    "rag": {"max_new_tokens": "3", "chunk_tokens": "16", "chunk_overlap": "0", "top_k": "2"},
    "finetune": {"max_new_tokens": "3", "max_tokens": "64", "steps": "1"},
}
METHODS = ["closed", "prompt", "prompt:oracle", "rag", "finetune"]

FACTS = [
    ("Ada Varn", "lighthouse keeper", "Port Elsin"),
    ("Tomas Brell", "cartographer", "Kessin"),
    ("Mira Okonde", "harbour master", "Sorrel"),
    ("Ivo Calder", "bookbinder", "Marrow Bay"),
    ("Lena Fosk", "glassblower", "Tarn"),
    ("Otto Rusk", "beekeeper", "Quill Hill"),
]


def small_benchmark() -> Benchmark:
    docs = [bench_document(id=f"d{i}", text=f"{name} is a {job} who lives in {town}.", source=f"bio/{i}",
                          timestamp=f"2024-01-0{i + 1}")
            for i, (name, job, town) in enumerate(FACTS)]
    questions = [BenchQuestion(id=f"q{i}", question=f"Where does {name} live?", answers=[town], doc_ids=[f"d{i}"],
                               type="home" if i % 2 else "city")
                 for i, (name, _, town) in enumerate(FACTS)]
    questions.append(BenchQuestion(id="q-pair", question="Who lives in Kessin and who in Sorrel?",
                                   answers=["Tomas Brell and Mira Okonde"], doc_ids=["d1", "d2"], type="multi"))
    bench = Benchmark(name="tiny-bios", documents=docs, questions=questions)
    bench.validate()
    return bench


