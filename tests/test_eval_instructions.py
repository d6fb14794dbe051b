"""Every IFEval instruction type, with responses that follow it and responses that do not.

Expected verdicts come from IFEval's published rules (google-research
instruction_following_eval/instructions.py), worked out by hand for each response.
"""

import pytest

from engine.eval.instructions import INSTRUCTIONS, check_instruction, validate_kwargs

LESS, AT_LEAST = "less than", "at least"

CASES = [
    # keywords:existence -- case-insensitive substring match of every keyword
    ("keywords:existence", {"keywords": ["steep", "Temperature"]},
     "Let it STEEP at the right temperature.", True),
    ("keywords:existence", {"keywords": ["steep", "temperature"]}, "Let it steep.", False),
    ("keywords:existence", {"keywords": ["leak-proof"]}, "Fully Leak-Proof lid.", True),
    ("keywords:existence", {"keywords": ["c++"]}, "I write C++ daily.", True),  # literal, not a regex
    # keywords:frequency -- substring occurrences, case-insensitive
    ("keywords:frequency", {"keyword": "tide", "frequency": 3, "relation": AT_LEAST},
     "The tide rose. Tides fall. TIDE again.", True),
    ("keywords:frequency", {"keyword": "tide", "frequency": 3, "relation": AT_LEAST},
     "The tide rose and the tide fell.", False),
    ("keywords:frequency", {"keyword": "carrot", "frequency": 2, "relation": LESS},
     "Add one carrot.", True),
    ("keywords:frequency", {"keyword": "carrot", "frequency": 2, "relation": LESS},
     "Carrot soup with carrots.", False),
    # keywords:forbidden_words -- whole words, case-insensitive
    ("keywords:forbidden_words", {"forbidden_words": ["noise", "boring"]},
     "Music is noisy but never dull.", True),
    ("keywords:forbidden_words", {"forbidden_words": ["noise", "boring"]},
     "It is not BORING at all.", False),
    # keywords:letter_frequency -- character count, case-insensitive
    ("keywords:letter_frequency", {"letter": "s", "let_frequency": 5, "let_relation": AT_LEAST},
     "Seven silly sailors sing.", True),                      # s x 6
    ("keywords:letter_frequency", {"letter": "s", "let_frequency": 7, "let_relation": AT_LEAST},
     "Seven silly sailors sing.", False),
    ("keywords:letter_frequency", {"letter": "Z", "let_frequency": 2, "let_relation": LESS},
     "A lazy day by the sea.", True),
    ("keywords:letter_frequency", {"letter": "z", "let_frequency": 2, "let_relation": LESS},
     "Zebras zigzag.", False),
    # language:response_language
    ("language:response_language", {"language": "fr"},
     "Ceci est une critique de mon jeu de société préféré. Les règles sont simples.", True),
    ("language:response_language", {"language": "fr"},
     "This is a review of my favourite board game. The rules are simple.", False),
    ("language:response_language", {"language": "de"}, "12345 67890", True),   # undetectable
    # length_constraints:number_sentences
    ("length_constraints:number_sentences", {"num_sentences": 4, "relation": LESS},
     "Mr. Smith paid 3.50 dollars. He left, e.g. at noon. Fine!", True),   # 3 sentences
    ("length_constraints:number_sentences", {"num_sentences": 3, "relation": LESS},
     "Mr. Smith paid 3.50 dollars. He left, e.g. at noon. Fine!", False),
    ("length_constraints:number_sentences", {"num_sentences": 2, "relation": AT_LEAST},
     "One. Two? Three!", True),
    # length_constraints:number_words -- \w+ runs
    ("length_constraints:number_words", {"num_words": 5, "relation": AT_LEAST},
     "It's a well-known fact.", True),                        # It s a well known fact = 6
    ("length_constraints:number_words", {"num_words": 6, "relation": LESS},
     "It's a well-known fact.", False),
    # length_constraints:number_paragraphs -- *** dividers, empty ends allowed
    ("length_constraints:number_paragraphs", {"num_paragraphs": 3},
     "First part.\n***\nSecond part.\n***\nThird part.", True),
    ("length_constraints:number_paragraphs", {"num_paragraphs": 2},
     "***\nFirst part.\n\n***\nSecond part.\n***", True),
    ("length_constraints:number_paragraphs", {"num_paragraphs": 2},
     "First.\n***\n***\nSecond.", False),                       # empty paragraph in between
    ("length_constraints:number_paragraphs", {"num_paragraphs": 3},
     "First part.\n***\nSecond part.", False),
    # length_constraints:nth_paragraph_first_word -- blank-line paragraphs
    ("length_constraints:nth_paragraph_first_word",
     {"num_paragraphs": 3, "nth_paragraph": 2, "first_word": "libraries"},
     "Intro.\n\n\"Libraries, as we know, lend books.\n\nEnd.", True),
    ("length_constraints:nth_paragraph_first_word",
     {"num_paragraphs": 3, "nth_paragraph": 2, "first_word": "libraries"},
     "Intro.\n\nBooks are lent by libraries.\n\nEnd.", False),
    ("length_constraints:nth_paragraph_first_word",
     {"num_paragraphs": 2, "nth_paragraph": 2, "first_word": "libraries"},
     "Intro.\n\nLibraries lend books.\n\nEnd.", False),         # 3 paragraphs, not 2
    ("length_constraints:nth_paragraph_first_word",
     {"num_paragraphs": 2, "nth_paragraph": 1, "first_word": "saturday"},
     "\n\nSaturday morning.\n\nSunday.", False),                 # IFEval indexes the raw split
    # detectable_content:number_placeholders
    ("detectable_content:number_placeholders", {"num_placeholders": 2},
     "Dear [name], see you on [date].", True),
    ("detectable_content:number_placeholders", {"num_placeholders": 3},
     "Dear [name], see you on [date].", False),
    # detectable_content:postscript
    ("detectable_content:postscript", {"postscript_marker": "P.S."}, "Thanks!\n\nP.S. Call me.", True),
    ("detectable_content:postscript", {"postscript_marker": "P.S."}, "Thanks!\n\nPS call me.", False),
    ("detectable_content:postscript", {"postscript_marker": "P.P.S"}, "Bye.\nP.P.S. One more.", True),
    ("detectable_content:postscript", {"postscript_marker": "P.P.S"}, "Bye.\np. p. s one more", True),
    ("detectable_content:postscript", {"postscript_marker": "P.P.S"}, "Bye.\nP.S. One more.", False),
    # detectable_format:number_bullet_lists -- "* " and "-" lines
    ("detectable_format:number_bullet_lists", {"num_bullets": 3},
     "Tips:\n* Water less.\n* More light.\n- Keep warm.", True),
    ("detectable_format:number_bullet_lists", {"num_bullets": 2},
     "Tips:\n* Water less.\n* More light.\n- Keep warm.", False),
    ("detectable_format:number_bullet_lists", {"num_bullets": 1},
     "**Bold heading**\n* Only point.", True),                   # "**" lines are not bullets
    # detectable_format:constrained_response
    ("detectable_format:constrained_response", {}, "  My answer is maybe.  ", True),
    ("detectable_format:constrained_response", {}, "My answer is probably yes.", False),
    # detectable_format:number_highlighted_sections
    ("detectable_format:number_highlighted_sections", {"num_highlights": 2},
     "*first* and **second**", True),
    ("detectable_format:number_highlighted_sections", {"num_highlights": 1}, "**bold**", True),
    ("detectable_format:number_highlighted_sections", {"num_highlights": 2}, "**bold**", False),
    ("detectable_format:number_highlighted_sections", {"num_highlights": 1},
     "** ** and *\nbroken*", False),                             # empty, and split by a newline
    # detectable_format:multiple_sections
    ("detectable_format:multiple_sections", {"section_spliter": "Day", "num_sections": 2},
     "Day 1\nHike.\nDay 2\nRest.", True),
    ("detectable_format:multiple_sections", {"section_spliter": "SECTION", "num_sections": 3},
     "SECTION 1\nA\nSECTION 2\nB", False),
    ("detectable_format:multiple_sections", {"section_spliter": "Section", "num_sections": 1},
     "SECTION 1\nA", False),                                      # case-sensitive
    # detectable_format:json_format
    ("detectable_format:json_format", {}, '{"planets": ["Mercury", "Venus"]}', True),
    ("detectable_format:json_format", {}, '```json\n{"a": 1}\n```', True),
    ("detectable_format:json_format", {}, '```JSON\n[1, 2]\n```\n', True),
    ("detectable_format:json_format", {}, 'Here it is: {"a": 1}', False),
    ("detectable_format:json_format", {}, '```json\n{"a": 1,}\n```', False),
    # detectable_format:title
    ("detectable_format:title", {}, "<<Autumn Rain>>\nDrops on glass.", True),
    ("detectable_format:title", {}, "<< >>\nDrops on glass.", False),
    ("detectable_format:title", {}, "<<Autumn\nRain>>", False),
    # combination:two_responses
    ("combination:two_responses", {}, "Bean There.\n******\nDaily Grind.", True),
    ("combination:two_responses", {}, "Bean There.\n******\nBean There.", False),
    ("combination:two_responses", {}, "A\n******\n******\nB", False),
    ("combination:two_responses", {}, "A\n******\nB\n******\nC", False),
    # combination:repeat_prompt
    ("combination:repeat_prompt", {"prompt_to_repeat": "Write a limerick about a cat."},
     "  write a LIMERICK about a cat.\nThere once was a cat...", True),
    ("combination:repeat_prompt", {"prompt_to_repeat": "Write a limerick about a cat."},
     "Sure! Write a limerick about a cat.", False),
    # startend:end_checker
    ("startend:end_checker", {"end_phrase": "Any other questions?"},
     "See you Monday. Any other questions?\n", True),
    ("startend:end_checker", {"end_phrase": "Any other questions?"},
     '"See you Monday. any other questions?"', True),              # quotes stripped
    ("startend:end_checker", {"end_phrase": "Any other questions?"},
     "Any other questions? Thanks.", False),
    # startend:quotation
    ("startend:quotation", {}, '  "A black hole is dense."  ', True),
    ("startend:quotation", {}, '"A black hole is dense.', False),
    ("startend:quotation", {}, '"', False),
    # change_case:english_capital / english_lowercase
    ("change_case:english_capital", {}, "GO TEAM! WE BUILT THIS ROBOT TOGETHER AND WE WILL WIN.",
     True),
    ("change_case:english_capital", {}, "GO TEAM! We built this robot together.", False),
    ("change_case:english_capital", {}, "ALLEZ L'ÉQUIPE! NOUS AVONS CONSTRUIT CE ROBOT ENSEMBLE.",
     False),                                                       # capitals, but French
    ("change_case:english_lowercase", {},
     "the sky is blue because air scatters blue light more than red light.", True),
    ("change_case:english_lowercase", {}, "The sky is blue because air scatters blue light.", False),
    # change_case:capital_word_frequency -- NLTK word tokens that are all capitals
    ("change_case:capital_word_frequency", {"capital_frequency": 4, "capital_relation": AT_LEAST},
     "I DON'T think NASA is late.", True),                         # I, DO, N'T, NASA
    ("change_case:capital_word_frequency", {"capital_frequency": 4, "capital_relation": LESS},
     "I DON'T think NASA is late.", False),
    ("change_case:capital_word_frequency", {"capital_frequency": 2, "capital_relation": LESS},
     "A STATE-OF-THE-ART tool.", False),                           # A, STATE-OF-THE-ART
    # punctuation:no_comma
    ("punctuation:no_comma", {}, "No commas here.", True),
    ("punctuation:no_comma", {}, "One, two.", False),
]


@pytest.mark.parametrize("instruction_id, kwargs, response, expected", CASES,
                         ids=[f"{c[0]}-{i}" for i, c in enumerate(CASES)])
def test_instruction_verdict_matches_ifeval_rule(instruction_id, kwargs, response, expected):
    assert validate_kwargs(instruction_id, kwargs) is None
    assert check_instruction(instruction_id, response, kwargs) is expected


def test_every_instruction_type_has_passing_and_failing_cases():
    seen = {(c[0], c[3]) for c in CASES}
    for instruction_id in INSTRUCTIONS:
        assert (instruction_id, True) in seen and (instruction_id, False) in seen, instruction_id
    assert len(INSTRUCTIONS) == 25


@pytest.mark.parametrize("instruction_id", sorted(INSTRUCTIONS))
def test_empty_response_follows_nothing(instruction_id):
    kwargs = next(c[1] for c in CASES if c[0] == instruction_id)
    assert check_instruction(instruction_id, "", kwargs) is False
    assert check_instruction(instruction_id, " \n\t", kwargs) is False


@pytest.mark.parametrize("instruction_id, kwargs, fragment", [
    ("keywords:unknown", {}, "unknown instruction id"),
    ("keywords:frequency", {"keyword": "x", "frequency": 2}, "missing ['relation']"),
    ("punctuation:no_comma", {"num_words": 3}, "unexpected ['num_words']"),
    ("length_constraints:number_words", {"num_words": 3, "relation": "at most"}, "relation"),
    ("length_constraints:number_words", {"num_words": "3", "relation": "at least"}, "integer"),
    ("keywords:letter_frequency", {"letter": "ab", "let_frequency": 1, "let_relation": "less than"},
     "single letter"),
    ("keywords:existence", {"keywords": []}, "non-empty list"),
    ("length_constraints:nth_paragraph_first_word",
     {"num_paragraphs": 2, "nth_paragraph": 3, "first_word": "a"}, "larger than"),
])
def test_bad_kwargs_are_explained(instruction_id, kwargs, fragment):
    problem = validate_kwargs(instruction_id, kwargs)
    assert problem is not None and fragment in problem


def test_language_detection_is_seeded():
    from langdetect import DetectorFactory

    from engine.eval.instructions import detect_language

    # Short, ambiguous text is where unseeded langdetect answers differ from call to call.
    # (Unseeded, each of these comes back as two or three different languages in 40 calls.)
    texts = ["hello hola bonjour", "bonjour hello ciao", "si oui yes", "danke merci"]
    first = [detect_language(t) for t in texts]
    DetectorFactory.seed = 12345          # someone else reseeds; we still answer the same
    assert [detect_language(t) for _ in range(5) for t in texts] == first * 5
