"""Every method the package implements or composes, with its paper and BibTeX: the one place citations are written.

Trainers take their TRL model-card ``_paper`` from here (:meth:`MethodCitation.as_trl_paper`) and the Hub cards of
:mod:`trl_igrpo.hub` list the methods a run used from here.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["DAPO", "IGRPO", "LLAMA_NEMOTRON", "LORA", "MethodCitation", "RPO", "TIED_LORA"]


@dataclass(frozen=True)
class MethodCitation:
    """A training method named on a model card: its display name, Hub tag, paper title, arXiv id and BibTeX."""

    name: str
    tag: str
    title: str
    arxiv_id: str
    bibtex: str

    @property
    def paper_url(self) -> str:
        """The paper's page on the Hugging Face Hub (``https://huggingface.co/papers/<arxiv id>``)."""
        return f"https://huggingface.co/papers/{self.arxiv_id}"

    def as_trl_paper(self) -> dict[str, str]:
        """The ``_paper`` dict TRL's ``create_model_card`` reads (title, arXiv id, BibTeX)."""
        return {"title": self.title, "id": self.arxiv_id, "citation": self.bibtex}


IGRPO = MethodCitation(
    name="iGRPO",
    tag="igrpo",
    title="iGRPO: Self-Feedback-Driven LLM Reasoning",
    arxiv_id="2602.09000",
    bibtex="""@article{hatamizadeh2026igrpo,
    title        = {{iGRPO: Self-Feedback-Driven LLM Reasoning}},
    author       = {Ali Hatamizadeh and Shrimai Prabhumoye and Igor Gitman and Ximing Lu and Seungju Han and Wei Ping and Yejin Choi and Jan Kautz},
    year         = 2026,
    eprint       = {arXiv:2602.09000}
}""",
)
RPO = MethodCitation(
    name="RPO (reward-aware preference optimization)",
    tag="rpo",
    title="Reward-aware Preference Optimization: A Unified Mathematical Framework for Model Alignment",
    arxiv_id="2502.00203",
    bibtex="""@article{sun2025rpo,
    title        = {{Reward-aware Preference Optimization: A Unified Mathematical Framework for Model Alignment}},
    author       = {Shengyang Sun and others},
    year         = 2025,
    eprint       = {arXiv:2502.00203}
}""",
)
TIED_LORA = MethodCitation(
    name="Tied-LoRA",
    tag="tied-lora",
    title="Tied-LoRA: Enhancing parameter efficiency of LoRA with Weight Tying",
    arxiv_id="2311.09578",
    bibtex="""@inproceedings{renduchintala2024tiedlora,
    title        = {{Tied-LoRA: Enhancing parameter efficiency of LoRA with Weight Tying}},
    author       = {Adithya Renduchintala and Tugrul Konuk and Oleksii Kuchaiev},
    booktitle    = {Proceedings of NAACL 2024},
    year         = 2024,
    eprint       = {arXiv:2311.09578}
}""",
)
LORA = MethodCitation(
    name="LoRA",
    tag="lora",
    title="LoRA: Low-Rank Adaptation of Large Language Models",
    arxiv_id="2106.09685",
    bibtex="""@inproceedings{hu2022lora,
    title        = {{LoRA: Low-Rank Adaptation of Large Language Models}},
    author       = {Edward J. Hu and Yelong Shen and Phillip Wallis and Zeyuan Allen-Zhu and Yuanzhi Li and Shean Wang and Lu Wang and Weizhu Chen},
    booktitle    = {International Conference on Learning Representations},
    year         = 2022,
    eprint       = {arXiv:2106.09685}
}""",
)
LLAMA_NEMOTRON = MethodCitation(
    name="Pass-rate curriculum (Llama-Nemotron progressive batching)",
    tag="pass-rate-curriculum",
    title="Llama-Nemotron: Efficient Reasoning Models",
    arxiv_id="2505.00949",
    bibtex="""@article{bercovich2025llamanemotron,
    title        = {{Llama-Nemotron: Efficient Reasoning Models}},
    author       = {Akhiad Bercovich and others},
    year         = 2025,
    eprint       = {arXiv:2505.00949}
}""",
)
DAPO = MethodCitation(
    name="Dynamic sampling (DAPO)",
    tag="dynamic-sampling",
    title="DAPO: An Open-Source LLM Reinforcement Learning System at Scale",
    arxiv_id="2503.14476",
    bibtex="""@article{yu2025dapo,
    title        = {{DAPO: An Open-Source LLM Reinforcement Learning System at Scale}},
    author       = {Qiying Yu and others},
    year         = 2025,
    eprint       = {arXiv:2503.14476}
}""",
)
