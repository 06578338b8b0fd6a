"""`hut-peft report`: docs/RESULTS.md from results.json files.

tables.py holds the paper-layout tables, names and Figure 3; fair.py the fair comparison's findings, verdicts and
curves (it imports tables.py); build.py writes the page (it imports both).
"""
