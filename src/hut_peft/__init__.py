"""hut-peft"""
