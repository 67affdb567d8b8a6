package sqsfake

import (
	"context"
	"fmt"

	"github.com/aws/aws-lambda-go/events"
	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	"github.com/aws/aws-sdk-go-v2/service/sqs/types"
)

// Client is the real aws-sdk-go-v2 SQS client, pointed at the fake with
// static credentials.
func (q *Queue) Client() *sqs.Client {
	return sqs.New(sqs.Options{
		Region:       "us-east-1",
		Credentials:  credentials.NewStaticCredentialsProvider("AKIDTEST", "secret", ""),
		BaseEndpoint: aws.String(q.Endpoint()),
	})
}

// Invoker delivers one SQS event to the function and returns its answer.
type Invoker func(ctx context.Context, ev events.SQSEvent) (events.SQSEventResponse, error)

// Poll plays one round of Lambda's event source mapping with
// ReportBatchItemFailures: it receives up to batch messages (hidden for
// visibility meanwhile), invokes the function with them, and deletes every
// message not reported in batchItemFailures. A failed invocation deletes
// nothing, as Lambda does: the messages come back after the visibility
// timeout. It returns how many messages the function got.
func Poll(ctx context.Context, c *sqs.Client, queueURL string, batch int32, visibility int32, invoke Invoker) (int, error) {
	out, err := c.ReceiveMessage(ctx, &sqs.ReceiveMessageInput{
		QueueUrl: &queueURL, MaxNumberOfMessages: batch, VisibilityTimeout: visibility, WaitTimeSeconds: 1,
		MessageSystemAttributeNames: []types.MessageSystemAttributeName{types.MessageSystemAttributeNameAll},
	})
	if err != nil {
		return 0, fmt.Errorf("receive: %w", err)
	}
	if len(out.Messages) == 0 {
		return 0, nil
	}
	ev := events.SQSEvent{Records: make([]events.SQSMessage, len(out.Messages))}
	for i, m := range out.Messages {
		ev.Records[i] = events.SQSMessage{
			MessageId: aws.ToString(m.MessageId), ReceiptHandle: aws.ToString(m.ReceiptHandle),
			Body: aws.ToString(m.Body), Md5OfBody: aws.ToString(m.MD5OfBody), Attributes: m.Attributes,
			EventSource: "aws:sqs", EventSourceARN: "arn:aws:sqs:us-east-1:000000000000:jobs", AWSRegion: "us-east-1",
		}
	}
	resp, err := invoke(ctx, ev)
	if err != nil {
		return len(out.Messages), fmt.Errorf("invoke: %w", err)
	}
	failed := map[string]bool{}
	for _, f := range resp.BatchItemFailures {
		failed[f.ItemIdentifier] = true
	}
	var entries []types.DeleteMessageBatchRequestEntry
	for _, m := range out.Messages {
		if !failed[aws.ToString(m.MessageId)] {
			entries = append(entries, types.DeleteMessageBatchRequestEntry{Id: m.MessageId, ReceiptHandle: m.ReceiptHandle})
		}
	}
	if len(entries) > 0 {
		if _, err := c.DeleteMessageBatch(ctx, &sqs.DeleteMessageBatchInput{QueueUrl: &queueURL, Entries: entries}); err != nil {
			return len(out.Messages), fmt.Errorf("delete: %w", err)
		}
	}
	return len(out.Messages), nil
}
