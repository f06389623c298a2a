#!/usr/bin/env python3
"""Generate the two PDF documents of the Acme Robotics example handbook (part A).

Writes:
  examples/acme-handbook/hr/benefits-summary-2026.pdf
  examples/acme-handbook/legal/record-retention-schedule.pdf

The text of these documents lives only here and in the generated PDFs. It is
plain ASCII set in a core PDF font (Helvetica), so text extraction with pypdf
gives clean text without ligatures or odd glyphs.

Usage (fpdf2 is not a project dependency; use any environment that has it):
  python3 -m venv /tmp/pdfvenv && /tmp/pdfvenv/bin/pip install fpdf2 pypdf
  /tmp/pdfvenv/bin/python scripts/make_handbook_pdfs_a.py [--check]

--check re-reads the PDFs with pypdf and verifies that the text extracts cleanly.

(~580 lines, most of them the documents' text: a data script, not a module the product imports.)
"""

from __future__ import annotations

import argparse
import datetime as dt
import sys
from pathlib import Path

from fpdf import FPDF
from fpdf.fonts import FontFace

ROOT = Path(__file__).resolve().parent.parent
HANDBOOK = ROOT / "examples" / "acme-handbook"

# Fixed date so that re-running the script gives the same document metadata.
CREATED = dt.datetime(2026, 1, 5, 9, 0, 0, tzinfo=dt.UTC)


# --------------------------------------------------------------------------
# Document content. Each document is a list of blocks:
#   ("h1", text) document title          ("h2", text) bold section heading
#   ("p", text)  paragraph               ("ul", [items]) bullet list
#   ("table", {"widths": [...], "rows": [[header...], [cells...], ...]})
#   ("pagebreak", None)
# --------------------------------------------------------------------------

BENEFITS = {
    "path": HANDBOOK / "hr" / "benefits-summary-2026.pdf",
    "title": "Acme Robotics 2026 Benefits Summary",
    "subject": "Health, dental, vision, retirement and insurance benefits for plan year 2026",
    "header": "Acme Robotics - 2026 Benefits Summary",
    "blocks": [
        ("h1", "Acme Robotics 2026 Benefits Summary"),
        (
            "p",
            "Owner: Benefits team, People Team. Plan year: 1 January 2026 to 31 December 2026. "
            "Last updated: 2025-11-20.",
        ),
        ("h2", "About this summary"),
        (
            "p",
            "This summary describes the benefits Acme Robotics offers to employees in the United States "
            "(Boston and Austin) for the 2026 plan year, followed by the main benefits for employees in "
            "Munich and Bangalore. It is a summary only. If anything here differs from the official plan "
            "documents, the plan documents govern. Plan documents and carrier contact details are in "
            "PeopleHub under Benefits > Plan Documents.",
        ),
        (
            "p",
            "Questions about benefits go to the Benefits team at benefits@acme-robotics.example or "
            "extension 4430.",
        ),
        ("h2", "Who is eligible and when coverage starts"),
        (
            "p",
            "US employees who are scheduled to work at least 30 hours a week are eligible for all benefits "
            "in this summary, together with their spouse or domestic partner and their children up to "
            "age 26. Medical, dental and vision coverage starts on your first day of employment.",
        ),
        (
            "p",
            "New hires must make their elections in PeopleHub (Benefits > Enroll) within 30 calendar days "
            "of their start date. If you do not enroll within 30 days, you will have no medical, dental or "
            "vision coverage until the next open enrollment, unless you have a qualifying life event. "
            "Life insurance, disability insurance and the Employee Assistance Program are provided "
            "automatically.",
        ),
        (
            "p",
            "Open enrollment for the 2027 plan year runs from 2 November to 13 November 2026. Outside "
            "open enrollment you can change your elections only after a qualifying life event, such as "
            "marriage, divorce, the birth or adoption of a child, or a spouse losing coverage. You must "
            "report the event and make your changes in PeopleHub within 30 days of the event.",
        ),
        ("h2", "Medical plans"),
        (
            "p",
            "Acme offers two medical plans. Both cover the same preventive care at 100 percent with no "
            "deductible, and both use national networks so Boston and Austin employees have the same "
            "choice.",
        ),
        (
            "ul",
            [
                "Acme Choice PPO, insured by Cigna (Open Access Plus network). Deductible USD 500 for an "
                "individual or USD 1,000 for a family. Out-of-pocket maximum USD 3,000 individual or "
                "USD 6,000 family. Copays: USD 25 for a primary care visit, USD 50 for a specialist, "
                "USD 250 for an emergency room visit.",
                "Acme Saver HDHP with HSA, insured by Aetna (Choice POS II network). Deductible USD 2,000 "
                "individual or USD 4,000 family. Out-of-pocket maximum USD 4,000 individual or USD 8,000 "
                "family. After the deductible, the plan pays 80 percent. Acme contributes to your Health "
                "Savings Account (HSA) at HSA Bank: USD 750 a year for individual coverage or USD 1,500 "
                "for any coverage that includes dependents, paid in equal amounts each pay period.",
            ],
        ),
        ("h2", "Dental and vision"),
        (
            "ul",
            [
                "Dental: Delta Dental PPO. Preventive care is covered at 100 percent, basic services "
                "(fillings, extractions) at 80 percent and major services (crowns, bridges) at 50 percent "
                "after a USD 50 deductible. The annual maximum is USD 2,000 per person. Orthodontia for "
                "children and adults is covered at 50 percent up to a USD 2,000 lifetime maximum.",
                "Vision: VSP Choice. One eye exam every 12 months for a USD 10 copay, and either a USD 200 "
                "frame allowance every 24 months or a USD 150 allowance for contact lenses every 12 months.",
            ],
        ),
        ("h2", "2026 monthly employee premiums"),
        (
            "p",
            "The table shows what you pay each month for each plan. Acme pays the rest of the premium. "
            "Premiums are deducted before tax, half from each semi-monthly paycheck.",
        ),
        (
            "table",
            {
                "widths": [54, 28, 34, 34, 29],
                "rows": [
                    [
                        "Plan (carrier)",
                        "Employee only",
                        "Employee + spouse or partner",
                        "Employee + child(ren)",
                        "Family",
                    ],
                    ["Acme Choice PPO (Cigna)", "USD 120", "USD 290", "USD 250", "USD 410"],
                    ["Acme Saver HDHP (Aetna)", "USD 45", "USD 130", "USD 110", "USD 190"],
                    ["Dental PPO (Delta Dental)", "USD 8", "USD 18", "USD 20", "USD 32"],
                    ["Vision (VSP)", "USD 4", "USD 8", "USD 9", "USD 13"],
                ],
            },
        ),
        (
            "p",
            "Example: an employee who covers a spouse and two children on the Acme Saver HDHP, Delta "
            "Dental and VSP pays USD 190 + USD 32 + USD 13 = USD 235 a month, or USD 117.50 per paycheck.",
        ),
        ("h2", "401(k) retirement plan"),
        (
            "p",
            "The Acme Robotics 401(k) Plan is administered by Fidelity (Fidelity NetBenefits). You can "
            "contribute from your first paycheck, on a pre-tax basis, as Roth contributions, or both.",
        ),
        (
            "ul",
            [
                "Company match: Acme matches 100 percent of the first 4 percent of eligible pay that you "
                "contribute, plus 50 percent of the next 2 percent. If you contribute 6 percent or more, you "
                "receive the maximum match of 5 percent of eligible pay.",
                "The match is paid every pay period and vests immediately.",
                "Automatic enrollment: new hires are enrolled at a 3 percent pre-tax contribution 30 "
                "days after "
                "their start date unless they choose a different rate or opt out in Fidelity NetBenefits. "
                "Automatic contributions increase by 1 percentage point each April, up to 6 percent.",
                "You can change your contribution rate at any time; changes take effect in the next pay "
                "period "
                "that is at least 5 business days away.",
            ],
        ),
        ("h2", "Life, disability and the Employee Assistance Program"),
        (
            "ul",
            [
                "Basic life and accidental death insurance through MetLife: 2 times your annual base "
                "salary, up "
                "to USD 750,000, paid entirely by Acme.",
                "Short-term disability through MetLife: 70 percent of base salary for up to 26 weeks, "
                "starting "
                "after 7 days of absence due to illness or injury. Paid by Acme.",
                "Long-term disability through MetLife: 60 percent of base salary, up to USD 15,000 a month, "
                "starting after 26 weeks. Paid by Acme.",
                "Employee Assistance Program (EAP) through ComPsych GuidanceResources: 6 free, confidential "
                "counseling sessions per person per issue each year, plus legal and financial consultations. "
                "Call 1-800-555-0123 at any time.",
            ],
        ),
        ("h2", "Munich (Acme Robotics GmbH)"),
        (
            "p",
            "Employees in Germany are covered by statutory health, long-term care, pension and "
            "unemployment insurance, with Acme paying the employer share required by law. Employees with "
            "private health insurance receive the legal employer subsidy. In addition:",
        ),
        (
            "ul",
            [
                "Company pension (betriebliche Altersversorgung) through Allianz direct insurance. Acme "
                "contributes 3 percent of gross salary, and adds a further 20 percent on top of any "
                "salary you "
                "convert into the pension yourself.",
                "Group accident insurance covering accidents at work and in private life, 24 hours a day, "
                "paid by Acme.",
            ],
        ),
        ("h2", "Bangalore (Acme Robotics India Pvt. Ltd.)"),
        (
            "ul",
            [
                "Group medical insurance through ICICI Lombard: hospitalisation cover of INR 500,000 "
                "per family "
                "per year for the employee, spouse and up to two children, paid by Acme. Parents or "
                "parents-in-law can be added for INR 12,000 per parent per year, deducted from salary.",
                "Group term life insurance: 3 times annual fixed pay, paid by Acme.",
                "Employees' Provident Fund: Acme contributes 12 percent of basic salary, matching the "
                "employee's statutory contribution.",
                "Gratuity as required by the Payment of Gratuity Act after 5 years of continuous service.",
            ],
        ),
        ("h2", "Where to get help"),
        (
            "p",
            "US benefits: benefits@acme-robotics.example or extension 4430. Munich: hr-munich@"
            "acme-robotics.example. Bangalore: hr-bangalore@acme-robotics.example. Carrier phone numbers "
            "are printed on your insurance cards and listed in PeopleHub.",
        ),
    ],
}

RETENTION = {
    "path": HANDBOOK / "legal" / "record-retention-schedule.pdf",
    "title": "Record Retention Schedule",
    "subject": "How long Acme Robotics keeps business records, and how they are destroyed",
    "header": "Acme Robotics - Record Retention Schedule (version 2026.1)",
    "blocks": [
        ("h1", "Record Retention Schedule"),
        ("p", "Owner: Legal (Records Management). Version 2026.1, effective 1 March 2026."),
        ("h2", "Purpose and scope"),
        (
            "p",
            "Acme Robotics keeps business records for as long as the law and our business need them, and "
            "no longer. Keeping records too briefly can break the law or leave us unable to defend a "
            "claim; keeping them too long increases storage costs and privacy risk. This schedule sets the "
            "minimum and maximum retention period for each category of record in every Acme office. It "
            "applies to paper and electronic records, wherever they are stored, including email, chat, "
            "shared drives and business systems.",
        ),
        (
            "p",
            "The Records Manager is Helen Park in the Boston Legal team (records@acme-robotics.example, "
            "extension 4470). She maintains this schedule, answers questions about it and approves "
            "exceptions.",
        ),
        ("h2", "How to use the schedule"),
        (
            "ul",
            [
                "Find the category that best matches the record. Classify the record by its content, not by "
                "its format: an email that approves a contract amendment is a contract record.",
                "The retention period starts at the trigger shown in the table (for example, the end of "
                "employment or the expiry of a contract). Where no trigger is shown, the period starts "
                "at the "
                "end of the calendar year in which the record was created.",
                "Where periods differ by country, apply the period for the country of the Acme entity that "
                "created or holds the record. If in doubt, keep the record for the longest period that "
                "applies.",
                "Copies and drafts that are not the official record should be deleted when no longer needed, "
                "and never kept longer than the official record.",
                "Records in business systems such as PeopleHub, PaySphere and LegalDesk are deleted "
                "automatically at the end of the period. For records on shared drives and paper files, the "
                "record owner named by each department is responsible for deletion.",
            ],
        ),
        ("h2", "Legal holds override this schedule"),
        (
            "p",
            "If Legal notifies you that records are subject to a legal hold, you must keep them, even if "
            "their retention period has ended, until Legal tells you in writing that the hold has been "
            "released. Automatic deletion is suspended for records under a hold. If you think records may "
            "be relevant to a lawsuit, investigation or audit that Legal might not know about, contact "
            "Legal before deleting anything.",
        ),
        ("h2", "Retention periods"),
        (
            "table",
            {
                "widths": [40, 54, 50, 35],
                "rows": [
                    ["Record category", "Examples", "Retention period", "System of record"],
                    [
                        "Personnel files",
                        "Offer letters, contracts, performance reviews, disciplinary records",
                        "7 years after employment ends",
                        "PeopleHub",
                    ],
                    [
                        "Payroll and tax records",
                        "Pay statements, timesheets, tax forms",
                        "US: 7 years; Germany: 10 years; India: 8 years",
                        "PaySphere, TimeTrack",
                    ],
                    [
                        "Form I-9 (US only)",
                        "I-9 forms and copies of identity documents",
                        "3 years after hire or 1 year after employment ends, whichever is later",
                        "PeopleHub",
                    ],
                    [
                        "HR investigation files",
                        "Case notes, interview notes, investigation reports",
                        "7 years after the case is closed",
                        "CaseVault",
                    ],
                    [
                        "Applications of candidates not hired",
                        "Resumes, interview feedback",
                        "US: 2 years; Germany: 6 months; India: 1 year",
                        "Careers Hub",
                    ],
                    [
                        "Benefit plan records",
                        "Enrollments, plan documents, beneficiary forms",
                        "6 years after the end of the plan year",
                        "PeopleHub",
                    ],
                    [
                        "Contracts and NDAs",
                        "Signed agreements, NDAs, amendments, purchase orders",
                        "7 years after expiry or termination",
                        "LegalDesk",
                    ],
                    [
                        "Accounting records",
                        "Invoices, ledgers, expense reports, bank statements",
                        "US: 7 years; Germany: 10 years; India: 8 years",
                        "ERP system",
                    ],
                    [
                        "Export control records",
                        "Licences, classifications, shipping documents, screening results",
                        "5 years after the export or after licence expiry, whichever is later",
                        "LegalDesk",
                    ],
                    [
                        "Product design records",
                        "Released drawings, CAD models, design review minutes",
                        "Life of the product plus 10 years",
                        "Product lifecycle system",
                    ],
                    [
                        "Safety test reports and certifications",
                        "Risk assessments, CE and UL test reports",
                        "15 years after the last unit of the product is shipped",
                        "Product lifecycle system",
                    ],
                    [
                        "Workplace injury and incident reports",
                        "Incident reports, OSHA 300 logs",
                        "5 years after the end of the year of the incident",
                        "FacilitiesDesk",
                    ],
                    ["Visitor records", "Visitor sign-ins and host approvals", "1 year", "FrontDesk"],
                    [
                        "CCTV footage",
                        "Building and lab camera recordings",
                        "30 days, unless needed for an incident",
                        "Security system",
                    ],
                    [
                        "Email",
                        "Messages in Acme mailboxes",
                        "3 years, then deleted automatically",
                        "Email system",
                    ],
                    [
                        "Chat messages",
                        "Direct messages and channel messages",
                        "18 months, then deleted automatically",
                        "Chat system",
                    ],
                    [
                        "Meeting recordings",
                        "Recorded video calls and transcripts",
                        "90 days",
                        "Video platform",
                    ],
                    [
                        "Corporate records",
                        "Board minutes, articles of incorporation, patents",
                        "Permanent",
                        "LegalDesk",
                    ],
                ],
            },
        ),
        ("h2", "Storage"),
        (
            "p",
            "Store official records in the system of record shown in the table. Do not keep the only copy "
            "of a business record on a laptop, a personal drive or in a personal email account. Paper "
            "records that must be kept are scanned into the system of record; originals are kept only "
            "where the law requires it (for example, some German tax documents), in the locked archive "
            "room of the office that created them.",
        ),
        ("h2", "Destruction"),
        (
            "ul",
            [
                "Paper records containing personal or confidential information go into the locked grey "
                "shredding bins on every floor. Never put them in recycling. The shredding contractor "
                "empties "
                "the bins every two weeks and issues a certificate of destruction, which Facilities keeps.",
                "Electronic records are deleted by the system of record at the end of the retention period. "
                "The Records Manager runs a deletion report each quarter and sends it to system owners for "
                "confirmation.",
                "Hardware that stored Acme data, such as laptops and lab PCs, is wiped or physically "
                "destroyed "
                "before it leaves Acme.",
            ],
        ),
        ("h2", "Exceptions and questions"),
        (
            "p",
            "If a business reason requires keeping a record longer than this schedule allows, submit an "
            "exception request in LegalDesk (Records > Retention exception) explaining the reason and the "
            "proposed period. The Records Manager decides within 10 business days. Exceptions are reviewed "
            "every year. For anything not covered by this schedule, contact records@acme-robotics.example "
            "before deleting or keeping the record.",
        ),
    ],
}


class HandbookPDF(FPDF):
    """FPDF with a simple running header and page-number footer."""

    def __init__(self, header_text: str):
        super().__init__(orientation="P", unit="mm", format="Letter")
        self.header_text = header_text
        self.set_margins(left=18, top=18, right=18)
        self.set_auto_page_break(auto=True, margin=20)

    def header(self) -> None:
        self.set_font("Helvetica", "I", 8)
        self.set_text_color(110, 110, 110)
        self.cell(0, 5, self.header_text, new_x="LMARGIN", new_y="NEXT", align="R")
        self.ln(3)
        self.set_text_color(0, 0, 0)

    def footer(self) -> None:
        self.set_y(-14)
        self.set_font("Helvetica", "I", 8)
        self.set_text_color(110, 110, 110)
        self.cell(0, 5, f"Page {self.page_no()} of {{nb}}", align="C")
        self.set_text_color(0, 0, 0)


def render(doc: dict) -> Path:
    pdf = HandbookPDF(doc["header"])
    pdf.set_title(doc["title"])
    pdf.set_author("Acme Robotics")
    pdf.set_subject(doc["subject"])
    pdf.set_creator("scripts/make_handbook_pdfs_a.py")
    pdf.set_creation_date(CREATED)
    pdf.alias_nb_pages()
    pdf.add_page()
    width = pdf.epw

    for kind, value in doc["blocks"]:
        if kind == "h1":
            pdf.set_font("Helvetica", "B", 18)
            pdf.multi_cell(width, 9, value, new_x="LMARGIN", new_y="NEXT")
            pdf.ln(2)
        elif kind == "h2":
            pdf.ln(2)
            pdf.set_font("Helvetica", "B", 13)
            pdf.multi_cell(width, 7, value, new_x="LMARGIN", new_y="NEXT")
            pdf.ln(1)
        elif kind == "p":
            pdf.set_font("Helvetica", "", 10.5)
            pdf.multi_cell(width, 5.2, value, new_x="LMARGIN", new_y="NEXT")
            pdf.ln(2)
        elif kind == "ul":
            pdf.set_font("Helvetica", "", 10.5)
            for item in value:
                pdf.set_x(pdf.l_margin + 3)
                pdf.multi_cell(width - 3, 5.2, "- " + item, new_x="LMARGIN", new_y="NEXT")
                pdf.ln(1)
            pdf.ln(1)
        elif kind == "table":
            pdf.set_font("Helvetica", "", 9.5)
            with pdf.table(
                col_widths=value["widths"],
                width=sum(value["widths"]),
                align="LEFT",
                text_align="LEFT",
                line_height=4.8,
                headings_style=FontFace(emphasis="BOLD", fill_color=(230, 235, 243)),
                padding=1.2,
            ) as table:
                for row in value["rows"]:
                    r = table.row()
                    for cell in row:
                        r.cell(cell)
            pdf.ln(3)
        elif kind == "pagebreak":
            pdf.add_page()
        else:  # pragma: no cover - content error
            raise ValueError(f"unknown block kind: {kind}")

    doc["path"].parent.mkdir(parents=True, exist_ok=True)
    pdf.output(str(doc["path"]))
    return doc["path"]


def all_text(doc: dict) -> str:
    parts = []
    for kind, value in doc["blocks"]:
        if kind in ("h1", "h2", "p"):
            parts.append(value)
        elif kind == "ul":
            parts.extend(value)
        elif kind == "table":
            parts.extend(c for row in value["rows"] for c in row)
    return "\n".join(parts)


def check(doc: dict) -> list[str]:
    """Re-read a generated PDF with pypdf and report problems."""
    from pypdf import PdfReader

    problems = []
    src = all_text(doc)
    if not src.isascii():
        problems.append("source text is not plain ASCII")
    reader = PdfReader(str(doc["path"]))
    n = len(reader.pages)
    if not 2 <= n <= 3:
        problems.append(f"expected 2-3 pages, got {n}")
    text = "\n".join(page.extract_text() or "" for page in reader.pages)
    bad = [ch for ch in set(text) if not (ch.isascii() and (ch.isprintable() or ch in "\n\t"))]
    if bad:
        problems.append(f"non-ASCII or control characters in extracted text: {sorted(bad)!r}")
    for lig in ("\ufb00", "\ufb01", "\ufb02", "\ufb03", "\ufb04"):
        if lig in text:
            problems.append(f"ligature {lig!r} in extracted text")
    # Every heading and every word of the source should come back out.
    flat = " ".join(text.split())
    for kind, value in doc["blocks"]:
        if kind in ("h1", "h2") and value not in flat:
            problems.append(f"heading not found in extracted text: {value!r}")
    src_words = set(src.replace("\n", " ").split())
    out_words = set(flat.split())
    missing = sorted(w for w in src_words if w not in out_words and w not in flat)
    if missing:
        problems.append(f"{len(missing)} source words not found, e.g. {missing[:8]}")
    print(f"{doc['path'].relative_to(ROOT)}: {n} pages, {len(flat.split())} words extracted")
    return problems


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--check", action="store_true", help="verify text extraction with pypdf afterwards")
    args = ap.parse_args(argv)

    failed = False
    for doc in (BENEFITS, RETENTION):
        path = render(doc)
        print(f"wrote {path.relative_to(ROOT)}")
        if args.check:
            for problem in check(doc):
                failed = True
                print(f"  PROBLEM: {problem}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
