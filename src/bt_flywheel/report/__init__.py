"""What a person looks at: the HTML report, plots and the leaderboard."""
