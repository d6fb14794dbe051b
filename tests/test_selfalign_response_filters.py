import pytest

from engine.selfalign.response_filters import RESPONSE_FILTERS, clean_response, filter_response

PROMPT = "Explain why the sky looks blue during the day.\n"


def test_clean_response_strips_and_cuts_at_special_tokens():
    assert clean_response("  \n The answer.  \n") == "The answer."
    assert clean_response("Paris.<|im_end|>\n<|im_start|>user\nThanks") == "Paris."
    assert clean_response("Done.<|endoftext|>junk") == "Done."
    assert clean_response("答案：42") == "42"
    assert clean_response("  ") == ""


def test_clean_response_is_idempotent():
    for text in ["  a \n", "x<|im_end|>y", "答案: 答案： 7 ", "Line one\nUser: hi"]:
        assert clean_response(clean_response(text)) == clean_response(text)


def test_clean_response_does_not_cut_dialogue_turns():
    # The reference drops such answers rather than trimming them.
    text = "Blue light scatters.\nUser: thanks"
    assert clean_response(text) == text


GOOD = ("Sunlight is scattered by air molecules, and shorter blue wavelengths scatter "
        "the most, so blue light reaches our eyes from every direction.")

FAILING = {
    "empty": [("", ""), (PROMPT, "   \n"), (PROMPT, "<|im_end|>rest")],
    "noinput_leak": [(PROMPT, "Input: <noinput>\nBecause of scattering.")],
    "dialogue_continuation": [
        (PROMPT, GOOD + "\nUser: Why is the sunset red?"),
        (PROMPT, GOOD + "\n\nHuman: thanks\n\nAssistant: You're welcome."),
        (PROMPT, GOOD + "\n\n### Instruction:\nName a planet."),
        (PROMPT, GOOD + "\n### Response\nMore."),
        (PROMPT, GOOD + "\nuser\nWhat about the ocean?"),
        (PROMPT, GOOD + "\n7. Instruction: Name a planet."),
        (PROMPT, GOOD + " [INST] next question [/INST]"),
        (PROMPT, GOOD + "\n\nQuestion: Why is grass green?"),
        (PROMPT, "Instruction: Explain why the sky is blue."),
    ],
    "multiple_choice_debris": [
        ("What is the capital of France?\n", "A. Paris\nB. London\nC. Berlin\nAnswer: A"),
        ("What is the capital of France?\n", "(A) Paris\n(B) Rome"),
        ("Which gas do plants absorb?\n", "Carbon dioxide. (A) CO2 (B) O2 (C) N2"),
        ("Which gas do plants absorb?\n", "A) carbon dioxide B) oxygen"),
        ("Which gas do plants absorb?\n", "Answer Choices: carbon dioxide, oxygen"),
    ],
    "trailing_question": [
        (PROMPT, GOOD + " Do you have any other questions?"),
        (PROMPT, GOOD + "\nWhat do you think?"),
        (PROMPT, GOOD + " Would you like me to explain sunsets as well??  "),
    ],
    "language_drift": [(PROMPT, GOOD + " 这是因为瑞利散射。")],
}


def test_every_filter_has_failing_examples():
    assert set(FAILING) == {name for name, _ in RESPONSE_FILTERS}


@pytest.mark.parametrize("reason", sorted(FAILING))
def test_filter_drops_its_failing_examples(reason):
    for prompt, response in FAILING[reason]:
        assert filter_response(prompt, response) == reason, response


KEPT = [
    (PROMPT, GOOD),
    # Worked examples with Input/Output lines and an "Answer:" line are ordinary answers.
    ("Write a Python function that doubles a number.\n",
     "def double(x):\n    return 2 * x\n\nInput: 4\nOutput: 8"),
    ("Solve 12 * 7.\n", "12 * 7 = 84.\nAnswer: 84"),
    # The prompt asks for options / a quiz / an outline.
    ("Write a multiple-choice question about photosynthesis.\n",
     "Which gas do plants absorb?\nA. Oxygen\nB. Carbon dioxide\nC. Nitrogen"),
    ("Pick the correct answer.\n(A) 3 (B) 4\nWhat is 2 + 2?\n", "(B) 4"),
    ("Write an outline for an essay on recycling.\n",
     "A. Introduction\nB. Benefits\nC. Conclusion"),
    # Lower-case letter lists and "e.g." are not options (the reference drops both).
    ("List benefits of walking.\n",
     "a. Better mood\nb. Stronger heart, e.g. lower blood pressure."),
    # A single labelled item is not a set of options.
    ("Name a vitamin found in citrus.\n", "A. Vitamin C is the best-known one."),
    # Rhetorical question without "you"; questions the prompt asked for.
    ("Write a persuasive line about recycling.\n", "Every can counts. So why wait?"),
    ("Write three interview questions for a barista.\n",
     "1. How do you handle a rush?\n2. What drink do you make best?\n3. Why do you want this job?"),
    ("Write a short dialogue between a teacher and a student.\n",
     "Teacher: Did you finish?\nStudent: Almost.\nQuestion: can I have five more minutes?"),
    ("Translate 'thank you' into Japanese.\n", "ありがとう (arigatou)"),
    ("Translate into English: 你好\n", "Hello."),
    # A question mark inside the answer, not at its end.
    (PROMPT, "Why blue? Because of Rayleigh scattering, which favours short wavelengths."),
]


@pytest.mark.parametrize("prompt, response", KEPT)
def test_ordinary_answers_are_kept(prompt, response):
    assert filter_response(prompt, response) is None


def test_filter_response_cleans_first():
    assert filter_response(PROMPT, "  " + GOOD + "<|im_end|>\nUser: next") is None
