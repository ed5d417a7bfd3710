"""What every application's student needs: the builtin text student (`text`), the vision student (`vision`),
the student's kind written once into its folder (`kind`), and loading a student folder (`load`).

    python -c "from mint.core.students.kind import KINDS; print(KINDS)"
"""
