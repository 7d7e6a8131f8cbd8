"""The simulated organisation's database ``corp``: schemas, tables, sizes, columns, joins.

Sizes are row counts at the start of the period; a full read of a table returns that many
rows. Domains group the tables an application or a team works with.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

DATABASE: Final = "corp"


@dataclass(frozen=True)
class Table:
    name: str  # schema-qualified
    rows: int
    columns: tuple[str, ...]
    domain: str

    @property
    def short(self) -> str:
        """The name without its schema (as PostgreSQL prints it in some errors)."""
        return self.name.split(".", 1)[1]

    @property
    def dated(self) -> bool:
        return "created_at" in self.columns

    @property
    def label(self) -> str:
        """A column worth grouping by or searching in: the first text-like column."""
        for c in self.columns[1:]:
            if not c.endswith(("_id", "_at")) and c not in ("id", "amount", "total", "qty"):
                return c
        return self.columns[0]


def _t(name: str, rows: int, columns: str, domain: str) -> Table:
    return Table(name, rows, tuple(c.strip() for c in columns.split(",")), domain)


TABLES: Final[tuple[Table, ...]] = (
    _t("sales.customers", 2_000_000, "id, email, name, phone, country, created_at", "shop"),
    _t("sales.addresses", 2_600_000, "id, customer_id, street, city, postcode, country", "shop"),
    _t("sales.orders", 8_000_000, "id, customer_id, status, total, currency, created_at", "shop"),
    _t("sales.order_items", 21_000_000, "id, order_id, product_id, qty, price", "shop"),
    _t("sales.payments", 7_500_000, "id, order_id, method, amount, created_at", "shop"),
    _t("sales.cards", 1_400_000, "id, customer_id, pan_token, holder, expiry", "shop"),
    _t("sales.products", 48_000, "id, sku, title, category, price, created_at", "shop"),
    _t("sales.carts", 900_000, "id, customer_id, status, created_at", "shop"),
    _t("sales.coupons", 22_000, "id, code, discount, valid_until", "shop"),
    _t("sales.invoices", 6_000_000, "id, order_id, number, amount, created_at", "shop"),
    _t("crm.contacts", 1_200_000, "id, customer_id, name, email, phone, created_at", "crm"),
    _t("crm.interactions", 9_000_000, "id, contact_id, channel, summary, created_at", "crm"),
    _t("crm.campaigns", 1_800, "id, name, channel, budget, created_at", "crm"),
    _t("crm.segments", 400, "id, name, rule, created_at", "crm"),
    _t("crm.tickets", 650_000, "id, customer_id, subject, status, priority, created_at", "crm"),
    _t("crm.ticket_notes", 2_100_000, "id, ticket_id, author_id, body, created_at", "crm"),
    _t("hr.employees", 12_500, "id, name, email, department, title, created_at", "hr"),
    _t("hr.salaries", 150_000, "id, employee_id, amount, currency, valid_from", "hr"),
    _t("hr.contracts", 14_000, "id, employee_id, kind, hours, created_at", "hr"),
    _t("hr.absences", 90_000, "id, employee_id, reason, days, created_at", "hr"),
    _t("hr.reviews", 40_000, "id, employee_id, rating, summary, created_at", "hr"),
    _t("hr.payroll_runs", 3_000, "id, period, status, total, created_at", "hr"),
    _t("cases.case_files", 850_000, "id, reference, status, officer_id, created_at", "cases"),
    _t("cases.parties", 2_300_000, "id, case_id, name, role, created_at", "cases"),
    _t("cases.documents", 3_400_000, "id, case_id, title, kind, created_at", "cases"),
    _t("cases.case_notes", 5_600_000, "id, case_id, author_id, body, created_at", "cases"),
    _t("cases.hearings", 410_000, "id, case_id, court, status, created_at", "cases"),
    _t("cases.evidence", 1_100_000, "id, case_id, label, location, created_at", "cases"),
    _t("cases.assignments", 900_000, "id, case_id, officer_id, active, created_at", "cases"),
    _t(
        "finance.ledger_entries",
        31_000_000,
        "id, gl_account_id, amount, memo, created_at",
        "finance",
    ),
    _t("finance.gl_accounts", 2_400, "id, code, name, kind", "finance"),
    _t("finance.budgets", 8_000, "id, gl_account_id, period, amount", "finance"),
    _t("finance.vendors", 15_000, "id, name, country, iban, created_at", "finance"),
    _t("finance.purchase_orders", 420_000, "id, vendor_id, status, amount, created_at", "finance"),
    _t(
        "finance.vendor_payments",
        1_300_000,
        "id, vendor_id, amount, reference, created_at",
        "finance",
    ),
    _t("ops.shipments", 7_200_000, "id, order_id, carrier, status, created_at", "ops"),
    _t("ops.inventory", 310_000, "id, warehouse_id, supplier_id, sku, qty", "ops"),
    _t("ops.warehouses", 40, "id, name, city, capacity", "ops"),
    _t("ops.suppliers", 3_500, "id, name, country, rating, created_at", "ops"),
    _t("ops.returns", 480_000, "id, order_id, reason, status, created_at", "ops"),
    _t("ops.jobs", 25_000, "id, name, state, started_at, finished_at", "ops"),
    _t("audit.access_log", 48_000_000, "id, user_id, path, status, created_at", "audit"),
    _t("audit.changes", 12_000_000, "id, table_name, row_id, actor, created_at", "audit"),
    _t("reporting.daily_sales", 3_650, "id, day, region, revenue, orders", "reporting"),
    _t("reporting.monthly_kpis", 240, "id, month, kpi, value", "reporting"),
    _t(
        "reporting.customer_ltv",
        2_000_000,
        "id, customer_id, segment, ltv, created_at",
        "reporting",
    ),
    _t("reporting.case_stats", 5_000, "id, day, court, opened, closed", "reporting"),
    _t("reporting.inventory_snapshot", 900_000, "id, day, sku, qty, warehouse_id", "reporting"),
    _t("public.users", 1_200_000, "id, login, email, password_hash, created_at", "platform"),
    _t("public.sessions", 3_000_000, "id, user_id, token, expires_at, created_at", "platform"),
    _t("public.schema_migrations", 420, "version, applied_at", "platform"),
    _t("public.app_settings", 150, "key, value, updated_at", "platform"),
    _t("public.feature_flags", 80, "name, enabled, updated_at", "platform"),
)

BY_NAME: Final = {t.name: t for t in TABLES}

# (parent, child, the child's column referencing parent.id)
JOINS: Final[tuple[tuple[str, str, str], ...]] = (
    ("sales.customers", "sales.orders", "customer_id"),
    ("sales.customers", "sales.addresses", "customer_id"),
    ("sales.customers", "sales.cards", "customer_id"),
    ("sales.customers", "sales.carts", "customer_id"),
    ("sales.orders", "sales.order_items", "order_id"),
    ("sales.orders", "sales.payments", "order_id"),
    ("sales.orders", "sales.invoices", "order_id"),
    ("sales.orders", "ops.shipments", "order_id"),
    ("sales.orders", "ops.returns", "order_id"),
    ("crm.contacts", "crm.interactions", "contact_id"),
    ("crm.tickets", "crm.ticket_notes", "ticket_id"),
    ("hr.employees", "hr.salaries", "employee_id"),
    ("hr.employees", "hr.absences", "employee_id"),
    ("hr.employees", "hr.contracts", "employee_id"),
    ("hr.employees", "hr.reviews", "employee_id"),
    ("cases.case_files", "cases.parties", "case_id"),
    ("cases.case_files", "cases.documents", "case_id"),
    ("cases.case_files", "cases.case_notes", "case_id"),
    ("cases.case_files", "cases.hearings", "case_id"),
    ("cases.case_files", "cases.evidence", "case_id"),
    ("finance.vendors", "finance.purchase_orders", "vendor_id"),
    ("finance.vendors", "finance.vendor_payments", "vendor_id"),
    ("finance.gl_accounts", "finance.ledger_entries", "gl_account_id"),
    ("ops.warehouses", "ops.inventory", "warehouse_id"),
    ("ops.suppliers", "ops.inventory", "supplier_id"),
    ("public.users", "public.sessions", "user_id"),
)

# Tables whose leak matters most: targets of exfiltration incidents.
SENSITIVE: Final = (
    "sales.customers", "sales.cards", "sales.addresses", "sales.payments", "hr.salaries",
    "hr.employees", "cases.parties", "cases.case_notes", "cases.documents", "crm.contacts",
    "public.users", "finance.vendors",
)  # fmt: skip


def in_domain(domain: str) -> list[Table]:
    return [t for t in TABLES if t.domain == domain]


def joins_within(names: set[str]) -> list[tuple[str, str, str]]:
    return [j for j in JOINS if j[0] in names and j[1] in names]
