package client_test

import (
	"context"
	"errors"
	"fmt"
	"log"
	"os"
	"time"

	"github.com/jobsd/jobsd/client"
	"github.com/jobsd/jobsd/gen"
)

// The examples run against the API that TestMain starts in process; it sets
// JOBS_URL and JOBS_TOKEN (an admin token) as jobsctl reads them.

func ExampleClient_CreatePreview() {
	ctx := context.Background()
	c, err := client.New(os.Getenv("JOBS_URL"), client.WithToken(os.Getenv("JOBS_TOKEN")))
	if err != nil {
		log.Fatal(err)
	}
	vars := map[string]string{"crop": "maize"}
	job, err := c.CreatePreview(ctx, gen.PromptPreviewRequest{
		Prompt:    "Summarise the market risks for {{crop}} farmers: prices swing with the weather.",
		Variables: &vars,
	}, client.CreateOptions{IdempotencyKey: "example-preview-1"})
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(job.Type, job.Status, job.Attempts)
	// Output:
	// AI_PREVIEW PENDING 0
}

func ExampleClient_Wait() {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	c, err := client.New(os.Getenv("JOBS_URL"), client.WithToken(os.Getenv("JOBS_TOKEN")))
	if err != nil {
		log.Fatal(err)
	}
	job, err := c.CreatePreview(ctx, gen.PromptPreviewRequest{
		Prompt: "Summarise the market risks for maize farmers. Prices are volatile and roads flood in April.",
	}, client.CreateOptions{})
	if err != nil {
		log.Fatal(err)
	}
	job, err = c.Wait(ctx, job.Id.String(), client.WithProgress(func(j gen.Job) {
		// Called on every change: PENDING, PROCESSING, COMPLETED, as seen.
	}))
	if err != nil {
		log.Fatal(err)
	}
	res, err := client.DecodeResult[client.AIPreviewResult](job)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(job.Status, job.Attempts, res.Output != "")
	// Output:
	// COMPLETED 1 true
}

func ExampleJobFailedError() {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	c, err := client.New(os.Getenv("JOBS_URL"), client.WithToken(os.Getenv("JOBS_TOKEN")))
	if err != nil {
		log.Fatal(err)
	}
	// The local model provider throttles every attempt of this prompt.
	job, err := c.CreatePreview(ctx, gen.PromptPreviewRequest{Prompt: "Summarise. [[simulate:throttle]]"}, client.CreateOptions{})
	if err != nil {
		log.Fatal(err)
	}
	job, err = c.Wait(ctx, job.Id.String())
	var failed *client.JobFailedError
	if errors.As(err, &failed) {
		fmt.Println(job.Status, job.Attempts)
		fmt.Println(failed.Message)
	}
	// Output:
	// FAILED 3
	// Bedrock API error: ThrottlingException - Rate exceeded
}

func ExampleClient_CreateJob() {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	c, err := client.New(os.Getenv("JOBS_URL"), client.WithToken(os.Getenv("JOBS_TOKEN")))
	if err != nil {
		log.Fatal(err)
	}
	text := "# Plan\n\nWe will sell maize at the market in May.\n\n## Storage\n\nThe bags are stored off the floor."
	job, err := c.CreateJob(ctx, "PARSE_DOCUMENT", gen.ParseDocumentInput{
		Document:    []byte(text), // sent base64, as the contract says
		ContentType: "text/markdown",
	}, client.CreateOptions{})
	if err != nil {
		log.Fatal(err)
	}
	job, err = c.Wait(ctx, job.Id.String())
	if err != nil {
		log.Fatal(err)
	}
	doc, err := client.DecodeResult[client.ParseDocumentResult](job)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(job.Status, doc.ContentType, doc.Counts.Sections)
	for _, s := range doc.Sections {
		fmt.Printf("%d %q\n", s.Level, s.Heading)
	}
	// Output:
	// COMPLETED text/markdown 2
	// 1 "Plan"
	// 2 "Storage"
}

func ExampleClient_All() {
	ctx := context.Background()
	c, err := client.New(os.Getenv("JOBS_URL"), client.WithToken(os.Getenv("JOBS_TOKEN")))
	if err != nil {
		log.Fatal(err)
	}
	for _, focus := range []string{"weather", "prices", "storage"} {
		_, err := c.CreateJob(ctx, "RISK_ANALYSIS", map[string]any{
			"text":  "Maize prices are volatile and roads flood in April.",
			"focus": focus,
		}, client.CreateOptions{IdempotencyKey: "example-risk-" + focus})
		if err != nil {
			log.Fatal(err)
		}
	}
	// Two jobs per page; All follows nextCursor to the end.
	n := 0
	for job, err := range c.All(ctx, client.ListOptions{Limit: 2, Type: gen.JobTypeRISKANALYSIS}) {
		if err != nil {
			log.Fatal(err)
		}
		fmt.Println(job.Type)
		n++
	}
	fmt.Println(n, "jobs")
	// Output:
	// RISK_ANALYSIS
	// RISK_ANALYSIS
	// RISK_ANALYSIS
	// 3 jobs
}

func ExampleIsNotFound() {
	c, err := client.New(os.Getenv("JOBS_URL"), client.WithToken(os.Getenv("JOBS_TOKEN")))
	if err != nil {
		log.Fatal(err)
	}
	_, err = c.Get(context.Background(), "550e8400-e29b-41d4-a716-446655440000")
	var apiErr *client.APIError
	if client.IsNotFound(err) && errors.As(err, &apiErr) {
		fmt.Println(apiErr.StatusCode, apiErr.Message)
	}
	// Output:
	// 404 Job not found or does not belong to the requesting user
}
