"""HTML sites, the reference crawl format, PDF, CSV, mixed folders, bad input: real files, no mocks."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import tablelm
from tablelm.corpus import FieldMap, ReadStats, detect_format, read_corpus
from tablelm.corpus.crawl import read_crawl
from tablelm.corpus.pdf import read_pdf
from tablelm.errors import CorpusError, ParamError

from conftest import reads_or_raises_corpus_error, write

ROOT = Path(__file__).resolve().parents[1]
FIXTURES = ROOT / "tests" / "fixtures" / "corpus"
SITE = FIXTURES / "site"
DATA = ROOT.parent / "shared" / "data"
WOLFRAM = DATA / "wolfram-sample" / "crawl_final_14501_15000.txt"
PYDOCS_HTML = Path("/usr/share/doc/python3.11/html")
needs_data = pytest.mark.skipif(not WOLFRAM.exists(), reason=f"test data not found at {WOLFRAM}")




def make_pdf(pages) -> bytes:
    """A valid PDF written by hand: ``pages`` is a list of lists of (font size, x, y, text)."""
    objs: list[bytes] = []

    def add(b: bytes) -> int:
        objs.append(b)
        return len(objs)

    font = add(b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica /Encoding /WinAnsiEncoding >>")
    pages_id = len(objs) + 2 * len(pages) + 1
    kids = []
    for lines in pages:
        ops = []
        for size, x, y, text in lines:
            t = text.replace("\\", "\\\\").replace("(", "\\(").replace(")", "\\)")
            ops.append(f"BT /F1 {size} Tf {x} {y} Td ({t}) Tj ET")
        stream = "\n".join(ops).encode("cp1252")
        c = add(b"<< /Length %d >>\nstream\n" % len(stream) + stream + b"\nendstream")
        kids.append(add(b"<< /Type /Page /Parent %d 0 R /MediaBox [0 0 612 792] /Contents %d 0 R "
                        b"/Resources << /Font << /F1 %d 0 R >> >> >>" % (pages_id, c, font)))
    kid_refs = b" ".join(b"%d 0 R" % k for k in kids)
    assert add(b"<< /Type /Pages /Kids [%s] /Count %d >>" % (kid_refs, len(kids))) == pages_id
    root = add(b"<< /Type /Catalog /Pages %d 0 R >>" % pages_id)
    out = bytearray(b"%PDF-1.4\n")
    offsets = []
    for i, o in enumerate(objs, 1):
        offsets.append(len(out))
        out += b"%d 0 obj\n" % i + o + b"\nendobj\n"
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objs) + 1)
    out += b"".join(b"%010d 00000 n \n" % o for o in offsets)
    out += b"trailer\n<< /Size %d /Root %d 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (len(objs) + 1, root, xref)
    return bytes(out)


WIDGETS = [
    [(24, 72, 720, "A Study of Widgets"),
     (11, 72, 690, "Widgets are small devices used in"),
     (11, 72, 676, "many machines around the world."),
     (11, 72, 640, "A second paragraph about gears"),
     (11, 72, 626, "and their teeth.")],
    [(16, 72, 720, "Results"), (11, 72, 690, "Gears mesh with widgets.")],
]


# --------------------------------------------------------------------------- HTML site


def test_site_pages_sections_breadcrumbs_and_links():
    stats = ReadStats()
    entities = {e.id: e for e in read_corpus([SITE], stats=stats)}
    assert list(entities) == ["guide/cafe.html", "guide/install.html", "guide/install.html#linux",
                              "guide/install.html#windows", "index.html", "index.html#gears",
                              "index.html#gear-ratios"]
    page = entities["index.html"]
    assert page.title == "Widget Handbook" and page.category == ()
    assert page.tags == ("widgets", "gears", "handbook")  # meta keywords, split on , and ;
    assert page.metadata["description"] == "How widgets and gears work together."
    assert page.metadata["DC.Creator"] == "A. Writer"
    assert not any(k.startswith("og:") for k in page.metadata)
    # "See also" first, then the other internal links, each resolved to an entity id
    assert page.related == ("guide/install.html", "guide/install.html#linux")
    assert page.metadata["external_links"] == [{"href": "https://example.org/widgets",
                                                "text": "external widget site"}]
    assert page.metadata["unresolved_links"] == 1  # missing.html
    everything = " ".join(e.text for e in entities.values())
    for boilerplate in ("boilerplate", "tracking", "color: red"):
        assert boilerplate not in everything
    ratios = entities["index.html#gear-ratios"]
    assert ratios.category == ("Widget Handbook", "Gears")
    assert "ratio = teeth_a / teeth_b\n  indented line" in ratios.text  # <pre> kept as is
    assert ratios.source == "index.html:22"
    # breadcrumb: "Home" and the page's own crumb dropped
    install = entities["guide/install.html"]
    assert install.category == ("Handbook", "Guides")
    assert install.related == ("index.html#gears",)
    linux = entities["guide/install.html#linux"]
    assert linux.category == ("Handbook", "Guides", "Installing widgets")
    assert "unclosed bold are repaired" in linux.text  # broken markup is read
    assert "installer icon" in entities["guide/install.html#windows"].text  # img alt
    # cp1252 page declared by <meta charset>; no breadcrumb: the folder path
    cafe = entities["guide/cafe.html"]
    assert cafe.text == "The café sells \u201csmart\u201d widgets." and cafe.category == ("guide",)
    assert stats.empty == 1 and stats.skipped == 0


def test_single_html_file_and_undeclared_cp1252(tmp_path):
    assert detect_format(SITE / "index.html") == "html"
    bad = write(tmp_path / "p.html", b"<html><body><h1>T</h1><p>caf\xe9 au lait</p></body></html>")
    with pytest.raises(CorpusError) as info:
        list(read_corpus([bad]))
    assert info.value.line == 1 and "--encoding cp1252" in info.value.message
    (e,) = read_corpus([bad], encoding="cp1252")
    assert e.text == "café au lait" and e.title == "T"


def test_index_pages_are_reported_not_read(tmp_path):
    links = "".join(f'<li><a href="p{i}.html">Entry number {i}</a></li>' for i in range(80))
    write(tmp_path / "genindex.html", f"<html><body><h1>Index</h1><ul>{links}</ul></body></html>")
    write(tmp_path / "p1.html", "<html><body><h1>One</h1><p>Real content here.</p></body></html>")
    stats = ReadStats()
    assert [e.id for e in read_corpus([tmp_path], stats=stats)] == ["p1.html"]
    ((path, reason),) = stats.skipped_files
    assert path.endswith("genindex.html") and "index page" in reason


def _pydocs_dir() -> Path:
    if not (PYDOCS_HTML / "library" / "json.html").exists():
        pytest.fail(f"Debian's python3.11-doc is not installed ({PYDOCS_HTML} missing): run "
                    "apt-get install -y python3.11-doc (.ci/run installs it)")
    return PYDOCS_HTML


@pytest.mark.slow
def test_python_html_docs_folder():
    root = _pydocs_dir()
    stats = ReadStats()
    entities = list(read_corpus([root], on_error="fail", stats=stats))
    by_id = {e.id: e for e in entities}
    assert len(by_id) == len(entities) > 3000
    assert stats.skipped == 0
    # _sources (reST copies) and _static are left out; genindex pages are indexes
    reasons = dict(stats.skipped_files)
    assert "Sphinx build folder" in reasons[str(root / "_sources")]
    assert "index page" in reasons[str(root / "genindex-A.html")]
    assert not any(e.id.startswith(("_sources/", "genindex-")) for e in entities)
    json_page = by_id["library/json.html"]
    assert json_page.title == "json — JSON encoder and decoder"
    assert json_page.category == ("The Python Standard Library", "Internet Data Handling")
    basic = by_id["library/json.html#basic-usage"]
    assert basic.category == json_page.category + (json_page.title,)
    assert basic.text.startswith("json.dump(obj, fp, *, skipkeys=False")
    for e in (json_page, basic):
        for junk in ("Quick search", "Navigation", "Table of Contents", "\u00b6", "Copyright"):
            assert junk not in e.text, (e.id, junk)
    # links resolved across pages: every related id is an entity; marshal is linked from json
    assert all(r in by_id for e in entities for r in e.related)
    assert "library/marshal.html" in json_page.related
    assert sum(bool(e.related) for e in entities) > 1500
    # a link to an anchor inside a section resolves to that section (json.dumps is in Basic Usage)
    assert any("library/json.html#basic-usage" in e.related for e in entities
               if not e.id.startswith("library/json.html"))


# --------------------------------------------------------------------------- reference crawl


@needs_data
def test_wolfram_crawl_reader():
    assert detect_format(WOLFRAM) == "crawl"
    stats = ReadStats()
    entities = list(read_corpus([WOLFRAM], stats=stats))
    assert len(entities) == 211 and stats.skipped == 0
    by_id = {e.id: e for e in entities}
    e = by_id["https://mathworld.wolfram.com/Rhombidodecadodecahedron.html"]
    assert e.title == "Rhombidodecadodecahedron"
    assert e.category == ("Geometry", "Solid Geometry", "Polyhedra", "Uniform Polyhedra")
    assert e.related[0] == "https://mathworld.wolfram.com/UniformPolyhedron.html"  # See also first
    assert e.metadata["see_also"] == ["Uniform Polyhedron"]
    assert "12{5/2}+30{4}+12{5}" in e.text  # formula images give their alt text
    for junk in ("Explore with Wolfram", "Cite this as", "Terms of Use", "Download"):
        assert junk not in e.text
    assert "51M04" in e.metadata["DC.Subject"]
    assert e.source == "crawl_final_14501_15000.txt:4"
    # the category is the breadcrumb whose last item is the crawl tuple's category
    taxicab = by_id["https://mathworld.wolfram.com/TaxicabNumber.html"]
    assert taxicab.category[-1] == "Proof" and taxicab.metadata["crawl_category"] == "Proof"
    assert "Number Theory > Special Numbers > Figurate Numbers > Cubic Numbers" in \
        taxicab.metadata["classifications"]
    # "See" pages (empty content, CrossRefs) are read, not lost
    see = by_id["https://mathworld.wolfram.com/UniformGreatRhombicosidodecahedron.html"]
    assert see.text == "See: Quasirhombicosidodecahedron"
    assert see.related == ("https://mathworld.wolfram.com/Quasirhombicosidodecahedron.html",)
    assert sum(r in by_id for x in entities for r in x.related) > 200


def test_crawl_bad_lines_named(tmp_path):
    good = ("https://x.org/A.html\t('A', 'Cat ', 1)\t~<html><body><h1>A</h1>"
            "<!-- Begin Content --><p>alpha text</p><!-- End Content --></body></html>")
    path = write(tmp_path / "crawl.txt", "\n".join([good, "https://x.org/B.html\tnot a tuple\t~<p>x</p>",
                                                   "https://x.org/C.html only one field"]) + "\n")
    with pytest.raises(CorpusError) as info:
        list(read_corpus([path]))
    assert info.value.line == 2 and "('Title', 'Category', depth)" in info.value.message
    stats = ReadStats()
    (e,) = read_crawl(path, on_error="skip", stats=stats)
    assert (e.id, e.text, e.category) == ("https://x.org/A.html", "alpha text", ("Cat",))
    assert [line for _, line, _ in stats.errors] == [2, 3]


# --------------------------------------------------------------------------- PDF


def test_pdf_paragraphs_pages_title_and_page_numbers(tmp_path):
    path = write(tmp_path / "docs" / "widgets.pdf", make_pdf(WIDGETS))
    entities = list(read_corpus([path]))
    assert [e.id for e in entities] == ["widgets.pdf#page=1&para=1", "widgets.pdf#page=1&para=2",
                                        "widgets.pdf#page=2&para=1"]
    first, second, third = entities
    assert first.text == "Widgets are small devices used in many machines around the world."
    assert second.text == "A second paragraph about gears and their teeth."
    assert first.title == "A Study of Widgets" and first.category == ("A Study of Widgets",)
    assert third.title == "Results"  # the larger line above it
    assert [e.metadata["page"] for e in entities] == [1, 1, 2]
    assert [e.source for e in entities] == ["widgets.pdf#page=1", "widgets.pdf#page=1",
                                            "widgets.pdf#page=2"]
    pages = list(read_corpus([path], pdf_unit="page"))
    assert [e.id for e in pages] == ["widgets.pdf#page=1", "widgets.pdf#page=2"]
    assert "many machines" in pages[0].text and pages[1].metadata["page"] == 2
    with pytest.raises(ParamError, match="'pdf_unit'"):
        read_corpus([path], pdf_unit="chapter")


def test_pdf_metadata_and_outline(tmp_path):
    from pypdf import PdfWriter

    src = write(tmp_path / "plain.pdf", make_pdf(WIDGETS))
    writer = PdfWriter(clone_from=str(src))
    writer.add_metadata({"/Title": "Widget Manual", "/Keywords": "widgets; gears",
                         "/Author": "A. Writer"})
    writer.add_outline_item(title="Results chapter", page_number=1)
    out = tmp_path / "folder" / "manual.pdf"
    out.parent.mkdir()
    writer.write(str(out))
    entities = list(read_corpus([tmp_path / "folder"]))
    assert [e.category for e in entities] == [("Widget Manual",)] * 2 + \
        [("Widget Manual", "Results chapter")]
    assert entities[0].tags == ("widgets", "gears") and entities[0].metadata["author"] == "A. Writer"


def test_bad_pdfs_name_the_file_and_say_how_to_fix(tmp_path):
    from pypdf import PdfWriter

    good = make_pdf(WIDGETS)
    truncated = write(tmp_path / "truncated.pdf", good[: len(good) // 2])
    junk = write(tmp_path / "junk.pdf", b"this is no pdf at all")
    src = write(tmp_path / "src" / "ok.pdf", good)
    writer = PdfWriter(clone_from=str(src))
    writer.encrypt("secret", algorithm="RC4-128")
    encrypted = tmp_path / "encrypted.pdf"
    writer.write(str(encrypted))
    for path, words in ((truncated, "damaged PDF"), (junk, "not a PDF"), (encrypted, "encrypted")):
        with pytest.raises(CorpusError) as info:
            list(read_corpus([path]))
        assert info.value.path == str(path) and words in info.value.message
        assert "fix:" in info.value.message
    stats = ReadStats()
    entities = list(read_corpus([tmp_path], on_error="skip", stats=stats))
    assert [e.id for e in entities] == ["src/ok.pdf#page=1&para=1", "src/ok.pdf#page=1&para=2",
                                        "src/ok.pdf#page=2&para=1"]
    assert stats.skipped == 3 and sorted(Path(p).name for p, _, _ in stats.errors) == \
        ["encrypted.pdf", "junk.pdf", "truncated.pdf"]
    # an encrypted PDF that opens with the empty password is read
    writer = PdfWriter(clone_from=str(src))
    writer.encrypt("", owner_password="owner", algorithm="RC4-128")
    opened = tmp_path / "owner-only.pdf"
    writer.write(str(opened))
    assert len(list(read_pdf(opened))) == 3


def test_pdf_without_text_is_reported(tmp_path):
    path = write(tmp_path / "scan.pdf", make_pdf([[]]))
    stats = ReadStats()
    assert list(read_corpus([path], stats=stats)) == []
    assert "ocrmypdf" in stats.skipped_files[0][1]


# --------------------------------------------------------------------------- CSV


def test_csv_field_map_list_fields_and_bad_rows(tmp_path):
    path = write(tmp_path / "items.csv",
                 "key,name,body,path,labels,see,extra\n"
                 '1,Hello,"some text, with a comma",Math;Algebra,a|b,2,x\n'
                 '2,Bye,"two\nlines",Geometry,,1;3,\n'
                 "3,bad row\n")
    fm = FieldMap(id_field="key", title_field="name", text_field="body", category_field="path",
                  tags_field="labels", related_field="see")
    with pytest.raises(CorpusError) as info:
        list(read_corpus([path], field_map=fm))
    assert info.value.line == 5 and "2 cells but the header has 7 columns" in info.value.message
    stats = ReadStats()
    one, two = read_corpus([path], field_map=fm, on_error="skip", stats=stats)
    assert (one.id, one.title, one.text) == ("1", "Hello", "some text, with a comma")
    assert one.category == ("Math", "Algebra") and one.tags == ("a", "b") and one.related == ("2",)
    assert one.metadata == {"extra": "x"} and one.source == "items.csv:2"
    assert two.text == "two\nlines" and two.related == ("1", "3") and two.source == "items.csv:3"
    assert stats.skipped == 1
    # another separator, a TSV file, a missing text column
    fm2 = FieldMap(id_field="key", title_field="name", text_field="body", tags_field="labels",
                   list_separators="/")
    tsv = write(tmp_path / "t.tsv", "key\tname\tbody\tlabels\n9\tT\tbody text\tx/y;z\n")
    (e,) = read_corpus([tsv], field_map=fm2)
    assert e.tags == ("x", "y;z")
    with pytest.raises(CorpusError, match=r"no id field .* fix: pass --id-field"):
        list(read_corpus([tsv]))
    with pytest.raises(CorpusError, match="pass --text-field body"):
        list(read_corpus([tsv], field_map=FieldMap(id_field="key")))


# --------------------------------------------------------------------------- mixed folders, bad input


def test_mixed_folder_reads_what_it_can_and_says_why(tmp_path):
    root = tmp_path / "mixed"
    write(root / "a.md", "# Alpha\n\nAlpha text about widgets.\n")
    write(root / "docs" / "w.pdf", make_pdf(WIDGETS))
    write(root / "docs" / "bad.pdf", b"%PDF-1.4\n garbage")
    write(root / "empty.md", "")
    write(root / "notes.txt", "Caf\xe9 menu\n".encode("cp1252"))
    write(root / "binary.txt", b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR")
    write(root / "big.txt", "word " * 300_000)
    write(root / "records.jsonl", json.dumps({"_id": "r1", "text": "json record"}) + "\n{oops\n")
    write(root / "page.html", "<html><body><h1>Page</h1><p>Html text <b>unclosed")
    write(root / "dup.md", "# Alpha\n\nAlpha text about widgets.\n")  # same content as a.md
    write(root / "picture.png", b"\x89PNG")
    stats = ReadStats()
    entities = list(read_corpus([root], on_error="skip", stats=stats, max_file_mb=1))
    ids = [e.id for e in entities]
    assert ids == ["a.md#alpha", "docs/w.pdf#page=1&para=1", "docs/w.pdf#page=1&para=2",
                   "docs/w.pdf#page=2&para=1", "page.html", "r1"]
    why = {Path(p).name: (line, msg) for p, line, msg in stats.errors}
    assert set(why) == {"bad.pdf", "notes.txt", "binary.txt", "big.txt", "records.jsonl"}
    assert "--encoding cp1252" in why["notes.txt"][1] and why["notes.txt"][0] == 1
    assert "binary data" in why["binary.txt"][1]
    assert "over the 1 MB limit" in why["big.txt"][1] and "max_file_mb" in why["big.txt"][1]
    assert "--max-file-mb" in why["big.txt"][1]  # the fix on the command line too
    assert why["records.jsonl"][0] == 2
    assert stats.skipped == 5 and stats.duplicates == 1 and stats.empty == 1
    assert stats.duplicate_ids == [("dup.md#alpha", "a.md#alpha")]
    assert [Path(p).name for p, _ in stats.skipped_files] == ["picture.png"]
    with pytest.raises(CorpusError):  # the same folder with on_error="fail" stops at bad.pdf
        list(read_corpus([root], max_file_mb=1))
    with pytest.raises(ParamError, match="'max_file_mb'"):
        read_corpus([root], max_file_mb=0)


def test_builtin_docs_markdown_front_matter_and_links_still_work(tmp_path):
    md = write(tmp_path / "site" / "guide.md",
               "---\ntags: [setup]\n---\n# Guide\n\nSee [api](api.md#load).\n\n## Part\n\nText.\n")
    entities = list(read_corpus([md.parent]))
    assert entities[0].tags == ("setup",) and entities[0].related == ("api.md#load",)
    assert entities[1].category == ("Guide",)


# --------------------------------------------------------------------------- fuzz: only CorpusError

_HTML_PIECES = ["<html>", "<body>", "<h1>", "</h1>", "<h2 id='x'>", "<p>", "<a href='", "'>", "</a>",
                "<nav>", "<!--", "-->", "<script>", "<pre>", "<meta charset='", "utf-16", "koi8-r",
                "x", "é", "\x00", "<section id=", "#", "../", "<ul class='breadcrumb'><li>", "<?xml ?>"]
_PDF_PIECES = [b"%PDF-1.4\n", b"1 0 obj", b"<< /Type /Catalog", b">>", b"endobj", b"xref", b"trailer",
               b"stream\n", b"endstream", b"/Encrypt", b"startxref\n", b"%%EOF", b"\x00\xff", b"999999"]
_CRAWL = "https://x.org/a.html\t('T', 'C ', 2)\t~"
_noise = st.one_of(
    st.binary(max_size=300),
    st.lists(st.sampled_from(_HTML_PIECES), max_size=50).map(lambda xs: "".join(xs).encode("utf-8")),
    st.lists(st.sampled_from(_PDF_PIECES), max_size=30).map(b"".join),
    st.binary(max_size=200).map(lambda b: make_pdf(WIDGETS)[:300] + b),
    st.lists(st.sampled_from(_HTML_PIECES + ["\t", "\n", _CRAWL]), max_size=40).map(
        lambda xs: (_CRAWL + "".join(xs)).encode("utf-8")),
    st.lists(st.sampled_from([",", ";", "|", '"', "\n", "\r", "_id", "text", "a", "\x00", "\t"]),
             max_size=60).map(lambda xs: ("_id,text,tags\n" + "".join(xs)).encode("utf-8")),
)


@settings(max_examples=250, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=_noise, suffix=st.sampled_from([".html", ".pdf", ".csv", ".tsv", ".txt", ".md", ".jsonl"]))
def test_every_reader_reads_or_raises_corpus_error(data, suffix):
    fm = FieldMap(tags_field="tags")
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / f"f{suffix}"
        path.write_bytes(data)
        for source in (path, Path(tmp)):
            reads_or_raises_corpus_error(source, field_map=fm)


# --------------------------------------------------------------------------- PDF layouts (reportlab)
def make_report_pdf(path: Path, title: str | None = None) -> Path:
    """Two pages in two columns with a running header and footer, headings and a table, set by
    reportlab's layout engine as a real document would be (not positioned by hand)."""
    pytest.importorskip("reportlab")
    from reportlab.lib.pagesizes import A4
    from reportlab.lib.styles import getSampleStyleSheet
    from reportlab.lib.units import cm
    from reportlab.platypus import BaseDocTemplate, Frame, PageTemplate, Paragraph, Table

    def header_footer(canvas, doc):
        canvas.saveState()
        canvas.setFont("Helvetica", 8)
        canvas.drawString(2 * cm, A4[1] - 1.2 * cm, "Journal of Gear Studies - Volume 7")
        canvas.drawRightString(A4[0] - 2 * cm, 1.2 * cm, f"Page {doc.page}")
        canvas.restoreState()

    path.parent.mkdir(parents=True, exist_ok=True)
    doc = BaseDocTemplate(str(path), pagesize=A4, invariant=1, **({"title": title} if title else {}))
    width, height = A4
    col = (width - 4 * cm - 0.8 * cm) / 2
    frames = [Frame(2 * cm, 2 * cm, col, height - 4 * cm, id="left"),
              Frame(2 * cm + col + 0.8 * cm, 2 * cm, col, height - 4 * cm, id="right")]
    doc.addPageTemplates([PageTemplate(id="two", frames=frames, onPage=header_footer)])
    ss = getSampleStyleSheet()
    body = ss["BodyText"]
    doc.build([
        Paragraph("A Study of Widgets", ss["Title"]),
        Paragraph("Widgets are small devices used in many machines around the world. " * 6, body),
        Paragraph("Gear Trains", ss["Heading2"]),
        Paragraph("A gear train transmits torque between shafts through meshing teeth. " * 8, body),
        Table([["Part", "Teeth", "Material"], ["Pinion", "12", "Steel"], ["Wheel", "48", "Bronze"]],
              colWidths=[3 * cm] * 3),
        Paragraph("Lubrication", ss["Heading2"]),
        Paragraph("Oil films keep the teeth apart and carry heat away from the contact. " * 10, body),
        Paragraph("Failure Modes", ss["Heading2"]),
        Paragraph("Pitting starts below the surface where the contact stress peaks. " * 30, body),
        Paragraph("Wear Tests", ss["Heading2"]),
        Paragraph("Each rig ran a thousand hours under load before the gears were cut open. " * 60, body),
    ])
    return path


def test_pdf_layout_columns_headers_and_tables(tmp_path):
    path = make_report_pdf(tmp_path / "report.pdf")
    entities = list(read_pdf(path))
    texts = [e.text for e in entities]
    assert {e.metadata["page"] for e in entities} == {1, 2}
    # the running header and the page-number footer are in no entity
    assert not any("Journal of Gear Studies" in t or "Page 1" in t or "Page 2" in t for t in texts)
    # title from the largest line (reportlab writes "(anonymous)" as /Title), headings as titles
    assert entities[0].category == ("A Study of Widgets",)
    assert entities[0].title == "A Study of Widgets" and entities[0].text.startswith("Widgets are small")
    by_title = {}
    for e in entities:
        by_title.setdefault(e.title, []).append(e)
    assert by_title["Lubrication"][0].text.startswith("Oil films keep the teeth apart")
    # the table: one entity, a row per line, cells in order
    (table,) = [e for e in entities if e.metadata.get("table")]
    assert table.title == "Gear Trains"
    assert table.text.split("\n") == ["Part | Teeth | Material", "Pinion | 12 | Steel", "Wheel | 48 | Bronze"]
    # columns read one after the other: the paragraph that flows from the left column into the
    # right one is one entity, its sentences whole and in order
    (pitting,) = by_title["Failure Modes"]
    assert pitting.text == " ".join(["Pitting starts below the surface where the contact stress peaks."] * 30)
    assert [e.title for e in entities if e.metadata["page"] == 1][-1] == "Wear Tests"
    wear = [e for e in by_title["Wear Tests"]]
    assert " ".join(e.text for e in wear).split() == \
        ("Each rig ran a thousand hours under load before the gears were cut open. " * 60).split()
    # a /Title in the metadata wins over the largest line
    titled = make_report_pdf(tmp_path / "titled.pdf", title="Gear Report")
    assert next(iter(read_pdf(titled))).category == ("Gear Report",)


def test_pdf_answers_cite_the_exact_text(tmp_path):
    path = make_report_pdf(tmp_path / "docs" / "report.pdf")
    model = tablelm.build([path.parent])
    card = model.ask("oil films carry heat away", k=3).cards[0]
    entity = model.entity(card.id)
    assert entity.title == "Lubrication" and card.id.startswith("report.pdf#page=1&para=")
    assert card.citations and all(
        (entity.text if c.field == "text" else entity.title)[c.start:c.end] == c.text for c in card.citations)
    table = model.ask("pinion teeth material", k=3).cards[0]
    assert model.entity(table.id).metadata.get("table")
